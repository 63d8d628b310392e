#!/usr/bin/env bash
# The end-to-end benchmark of issue 6, on one GPU of the GPU host: for each
# shape, foak's benchmark job (kernel sets none, foak, all) and the Hugging
# Face transformers peer (bench/hf_peer.py), one after the other on the same
# card, then one table (bench/bench_table.py).
#
#   scripts/bench_e2e.sh OUTDIR [--build DIR] [--via foakd|worker]
#                        [--shapes 1b_2048,1b_512,8b_2048,8b_512] [--max-batch]
#                        [--steps N] [--warmup N] [--no-hf]
#
# --via foakd (default) submits each shape with `foakctl bench` to a foakd
#   started here with --gpus auto, so the numbers come through the product's
#   own path; --via worker runs `foak-worker train --job` on a bench job file.
# --max-batch adds the largest-batch search at the shapes marked for it.
# Both sides: random weights, random tokens, pure bf16 parameters, fused
# AdamW, gradient clipping at 1.0, warm-up steps then timed steps; tokens/s =
# tokens of the timed steps / their wall time; peak = the CUDA allocator's
# peak allocated bytes over the steps.
#
# FOAK_COMMIT (optional) names the commit in the plot title.
# OUTDIR gets bench_e2e.md (tables, target checks), bench_e2e.json (every
# row) and bench_e2e.png (the plot); the raw rows and logs go to
# OUTDIR/../bench_e2e_work unless BENCH_WORK is set.
set -uo pipefail

usage() { sed -n '7,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
OUTDIR="$1"; shift
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$REPO/build"
VIA=foakd
SHAPES="1b_2048,1b_512,8b_2048,8b_512"
MAX_BATCH=0
STEPS=10
WARMUP=3
HF=1
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD="$2"; shift 2 ;;
    --via) VIA="$2"; shift 2 ;;
    --shapes) SHAPES="$2"; shift 2 ;;
    --max-batch) MAX_BATCH=1; shift ;;
    --steps) STEPS="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --no-hf) HF=0; shift ;;
    *) echo "bench_e2e: unknown argument '$1'" >&2; usage ;;
  esac
done
case "$VIA" in foakd|worker) ;; *) echo "bench_e2e: --via takes foakd or worker" >&2; exit 2 ;; esac
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
WORK="${BENCH_WORK:-$(dirname "$OUTDIR")/bench_e2e_work}"
mkdir -p "$WORK"
FOAK_ROWS="$WORK/foak.jsonl"
HF_ROWS="$WORK/hf.jsonl"
: > "$FOAK_ROWS"
: > "$HF_ROWS"
log() { echo "[bench_e2e $(date +%H:%M:%S)] $*" >&2; }

# shape -> "model method seq batch search kernel-sets". The 1B shapes add
# the fused linear cross-entropy alone, so its own effect against the plain
# composite (the materialised logits) shows in one row.
shape_def() {
  case "$1" in
    1b_2048) echo "llama-3.2-1b full 2048 4 1 none;foak;all;fused_linear_cross_entropy" ;;
    1b_512) echo "llama-3.2-1b full 512 16 0 none;foak;all;fused_linear_cross_entropy" ;;
    8b_2048) echo "llama-3-8b lora 2048 2 1 none;foak;all" ;;
    8b_512) echo "llama-3-8b lora 512 8 0 none;foak;all" ;;
    *) return 1 ;;
  esac
}

FOAKD_PID=""
SERVER=""
stop_foakd() {
  [ -n "$FOAKD_PID" ] || return 0
  kill -TERM "$FOAKD_PID" 2>/dev/null
  wait "$FOAKD_PID" 2>/dev/null
  FOAKD_PID=""
}
trap stop_foakd EXIT

start_foakd() {
  local port_file="$WORK/foakd.ports"
  rm -f "$port_file"
  "$BUILD/server/transport/foakd" --listen 127.0.0.1:0 --metrics_listen 127.0.0.1:0 \
    --data_dir "$WORK/foakd" --worker "$BUILD/worker/foak-worker" --gpus auto \
    --port_file "$port_file" > "$WORK/foakd.log" 2>&1 &
  FOAKD_PID=$!
  local i
  for i in $(seq 1 100); do
    [ -s "$port_file" ] && grep -q '^grpc=' "$port_file" && break
    kill -0 "$FOAKD_PID" 2>/dev/null || { log "foakd exited:"; tail -20 "$WORK/foakd.log" >&2; return 1; }
    sleep 0.1
  done
  SERVER="127.0.0.1:$(sed -n 's/^grpc=//p' "$port_file")"
  [ "$SERVER" != "127.0.0.1:" ] || { log "foakd wrote no port file"; return 1; }
  log "foakd on $SERVER (pid $FOAKD_PID, --gpus auto)"
}

run_foak() {  # run_foak SHAPE MODEL METHOD SEQ BATCH SEARCH KERNEL_SETS
  local shape="$1" model="$REPO/bench/models/$2" method="$3" seq="$4" batch="$5" search="$6"
  local sets ks kernel_flags=() kernel_json=""
  IFS=';' read -r -a sets <<< "$7"
  for ks in "${sets[@]}"; do
    kernel_flags+=(--kernels "$ks")
    kernel_json="${kernel_json:+$kernel_json, }\"$ks\""
  done
  local find=false
  [ "$MAX_BATCH" = 1 ] && [ "$search" = 1 ] && find=true
  if [ "$VIA" = foakd ]; then
    local args=(bench --server "$SERVER" --model "$model" --method "$method" --batch "$batch"
                --seq "$seq" --steps "$STEPS" --warmup "$WARMUP" --precision bf16 --gpus 1
                --name "bench-$shape" "${kernel_flags[@]}" -o json)
    [ "$method" = lora ] && args+=(--lora-r 16 --lora-alpha 16 --lora-dropout 0)
    [ "$find" = true ] && args+=(--find-max-batch)
    log "foak ($shape): foakctl ${args[*]}"
    "$BUILD/client/foakctl" "${args[@]}" >> "$FOAK_ROWS" 2> "$WORK/foak_$shape.log"
  else
    local job="$WORK/job_$shape.json" out="$WORK/out_$shape"
    rm -rf "$out"
    local lora=""
    [ "$method" = lora ] && lora='"lora": {"r": 16, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"},'
    cat > "$job" <<JSON
{"name": "bench-$shape", "model": "$model", "method": "$method", $lora
 "output_dir": "$out", "device": "cuda",
 "hyperparameters": {"precision": "bf16", "learning_rate": 1e-5, "max_grad_norm": 1.0, "seed": 0},
 "bench": {"kernel_sets": [$kernel_json], "batch_sizes": [$batch], "seq_lens": [$seq],
           "warmup_steps": $WARMUP, "steps": $STEPS, "find_max_batch": $find}}
JSON
    log "foak ($shape): foak-worker train --job $job"
    "$BUILD/worker/foak-worker" train --job "$job" > "$WORK/foak_$shape.log" 2>&1
    local rc=$?
    [ -f "$out/bench.jsonl" ] && cat "$out/bench.jsonl" >> "$FOAK_ROWS"
    return $rc
  fi
}

run_hf() {  # run_hf SHAPE MODEL METHOD SEQ BATCH SEARCH
  local shape="$1" model="$REPO/bench/models/$2" method="$3" seq="$4" batch="$5" search="$6"
  local args=(--model "$model" --method "$method" --batch "$batch" --seq "$seq"
              --steps "$STEPS" --warmup "$WARMUP" --out "$HF_ROWS")
  [ "$method" = lora ] && args+=(--lora-r 16 --lora-alpha 16 --lora-dropout 0)
  [ "$MAX_BATCH" = 1 ] && [ "$search" = 1 ] && args+=(--find-max-batch)
  log "transformers ($shape): hf_peer.py ${args[*]}"
  python3 "$REPO/bench/hf_peer.py" "${args[@]}" 2> "$WORK/hf_$shape.log"
}

if [ "$VIA" = foakd ]; then
  start_foakd || exit 1
fi
status=0
IFS=',' read -r -a shape_list <<< "$SHAPES"
for shape in "${shape_list[@]}"; do
  def="$(shape_def "$shape")" || { log "unknown shape '$shape'"; status=2; continue; }
  read -r model method seq batch search kernel_sets <<< "$def"
  t0=$(date +%s)
  run_foak "$shape" "$model" "$method" "$seq" "$batch" "$search" "$kernel_sets" || { status=1; log "foak $shape failed (see $WORK/foak_$shape.log)"; tail -5 "$WORK/foak_$shape.log" >&2; }
  t1=$(date +%s)
  if [ "$HF" = 1 ]; then
    run_hf "$shape" "$model" "$method" "$seq" "$batch" "$search" || { status=1; log "transformers $shape failed"; tail -5 "$WORK/hf_$shape.log" >&2; }
  fi
  log "$shape: foak $((t1 - t0)) s, transformers $(( $(date +%s) - t1 )) s"
done
stop_foakd

GPU="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
python3 "$REPO/bench/bench_table.py" "$FOAK_ROWS" "$HF_ROWS" --targets \
  --markdown "$OUTDIR/bench_e2e.md" --json "$OUTDIR/bench_e2e.json" \
  --plot "$OUTDIR/bench_e2e.png" --title "foak vs transformers on ${GPU:-GPU} (${FOAK_COMMIT:-$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null)})" \
  > /dev/null 2> "$WORK/table.log" || { status=1; log "bench_table failed"; cat "$WORK/table.log" >&2; }
[ -f "$OUTDIR/bench_e2e.md" ] && cat "$OUTDIR/bench_e2e.md"
exit $status
