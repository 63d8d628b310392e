#!/usr/bin/env bash
# Issue 10's measurements on the GPU host: LoRA against QLoRA (NF4 base) at
# the Llama-3-8B shape on one GPU, each with no kernels, with every kernel but
# fused_lora, and with all of them (fused_lora included), so each lever shows
# in its own row; then a Llama-3-70B-shaped QLoRA step on one GPU and, when
# the host has two, on two (data parallel, each GPU holding the NF4 base).
# Benchmark jobs train random weights on random tokens (worker/bench/
# bench_job.h): pure bf16, LoRA r 16 on every projection (alpha 32, no
# dropout, as fused_lora needs), AdamW on the adapters.
#
#   scripts/bench_qlora.sh OUTDIR [BUILD]     (scripts/gpu_host.sh step qlora_bench)
# OUTDIR gets qlora_bench.jsonl (every row) and qlora_bench.md.
# QLORA_BENCH_SKIP=8b,70b,70b_2gpu skips parts.
set -uo pipefail
OUT="$1"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${2:-$REPO/build}"
WORKER="$BUILD/worker/foak-worker"
LOGS="${QLORA_LOGS:-$OUT/qlora_logs}"
mkdir -p "$LOGS"
WORK="$(mktemp -d /tmp/foak_qlora.XXXXXX)"
ROWS="$OUT/qlora_bench.jsonl"
: > "$ROWS"
skip() { case ",${QLORA_BENCH_SKIP:-}," in *",$1,"*) return 0 ;; esac; return 1; }
log() { echo "bench_qlora: $*" >&2; }

# job NAME MODEL METHOD BATCH SEQ CKPT KERNEL_SETS(;-separated): prints the path.
job() {
  python3 - "$WORK" "$REPO" "$@" <<'PY'
import json, sys
work, repo, name, model, method, batch, seq, ckpt, sets = sys.argv[1:10]
job = {"name": name, "model": f"{repo}/bench/models/{model}", "output_dir": f"{work}/{name}",
       "device": "cuda", "method": method,
       "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"},
       "hyperparameters": {"precision": "bf16", "gradient_checkpointing": ckpt == "on",
                           "ddp_timeout": 600},
       "bench": {"kernel_sets": sets.split(";"), "batch_sizes": [int(batch)],
                 "seq_lens": [int(seq)], "warmup_steps": 2, "steps": 6}}
if method == "qlora":
    job["quantization"] = {"type": "nf4", "double_quant": True}
path = f"{work}/{name}.json"
json.dump(job, open(path, "w"))
print(path)
PY
}

# run NAME GPUS ARGS...: the job on GPUS ranks; its rows tagged into ROWS.
run() {
  local name="$1" gpus="$2"; shift 2
  local jobfile; jobfile="$(job "$name" "$@")"
  local rc=0
  if [ "$gpus" = 1 ]; then
    CUDA_VISIBLE_DEVICES=0 timeout 300 "$WORKER" train --job "$jobfile" > "$LOGS/$name.log" 2>&1 || rc=$?
  else
    timeout 300 "$WORKER" launch --nproc-per-node "$gpus" -- train --job "$jobfile" \
      > "$LOGS/$name.log" 2>&1 || rc=$?
  fi
  if [ -s "$WORK/$name/bench.jsonl" ]; then
    python3 - "$WORK/$name/bench.jsonl" "$name" "$gpus" >> "$ROWS" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    row = json.loads(line)
    row["run"], row["world_size"] = sys.argv[2], int(sys.argv[3])
    print(json.dumps(row))
PY
  else
    python3 -c 'import json,sys; print(json.dumps({"run": sys.argv[1], "world_size": int(sys.argv[2]), "status": "failed", "error": open(sys.argv[3]).read()[-400:]}))' \
      "$name" "$gpus" "$LOGS/$name.log" >> "$ROWS"
  fi
  log "$name: rc $rc"
  return $rc
}

STATUS=0
SETS="none;foak,fused_linear_cross_entropy;all"
if ! skip 8b; then
  run 8b_lora 1 llama-3-8b lora 2 2048 off "$SETS" || STATUS=1
  run 8b_qlora 1 llama-3-8b qlora 2 2048 off "$SETS" || STATUS=1
fi
if ! skip 70b; then
  run 70b_qlora 1 llama-3-70b qlora 1 2048 on "all" || STATUS=1
fi
GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
if ! skip 70b_2gpu && [ "$GPUS" -ge 2 ]; then
  run 70b_qlora_2gpu 2 llama-3-70b qlora 1 2048 on "all" || STATUS=1
fi

python3 - "$ROWS" > "$OUT/qlora_bench.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
gib = 2 ** 30
print("| run | GPUs | batch/GPU x seq | kernels | act. ckpt | tokens/s | ms/step | peak GiB (rank 0) | status |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if r.get("status") == "ok":
        print(f"| {r['run']} | {r['world_size']} | {r.get('batch')} x {r.get('seq')} | "
              f"{r.get('kernels', '-')} | {'on' if r.get('activation_checkpointing') else 'off'} | "
              f"{r['tokens_per_second']:,.0f} | {r['ms_per_step']:.1f} | "
              f"{r['peak_allocated_bytes'] / gib:.2f} | ok |")
    else:
        err = str(r.get("error", ""))[-200:].replace("\n", " ").replace("|", "/")
        print(f"| {r['run']} | {r.get('world_size')} | {r.get('batch', '-')} x {r.get('seq', '-')} | "
              f"{r.get('kernels', '-')} | - | - | - | - | {r.get('status')}: {err} |")
PY
cat "$OUT/qlora_bench.md" >&2
exit $STATUS
