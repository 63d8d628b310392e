#!/usr/bin/env bash
# Data parallelism on the GPUs of one host (issue 7), in one command:
#   1. the data-parallel integration tests over NCCL, one rank per GPU
#      (FOAK_DP_TEST_DEVICE=cuda): 2 ranks x batch b = 1 rank x batch 2b,
#      LoRA, a missing rank named, a killed rank and resume, sharded state;
#   2. scaling: Llama-3.2-1B-shaped full fine-tuning (pure bf16, every FOAK
#      kernel, 4 x 2048 per GPU) on 1 GPU and on 2; efficiency =
#      tokens/s on 2 / (2 x tokens/s on 1);
#   3. Llama-3-8B-shaped full fine-tuning in bf16-mixed (fp32 masters and
#      moments) on 2 GPUs with the optimizer state sharded (zero_stage 1),
#      tokens/s and peak memory per GPU; and the same unsharded, which is
#      expected not to fit;
#   4. fine-tunes through foakd with --gpus 2 (scripts/foakd_gpu_check.sh).
# Ranks are started by `foak-worker launch` (torchrun's variables).
#
#   scripts/dp_gpu_check.sh OUTDIR [BUILD_DIR]
# OUTDIR gets dp_gpu.md (the figures) and dp_gpu.jsonl (every benchmark row,
# tagged with its run); logs go to $DP_LOGS (default OUTDIR/dp_logs). Needs 2
# GPUs (exit 3 otherwise). DP_CHECK_SKIP=tests,scaling,8b,foakd skips parts.
set -uo pipefail
OUT="$1"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${2:-$REPO/build}"
WORKER="$BUILD/worker/foak-worker"
LOGS="${DP_LOGS:-$OUT/dp_logs}"
mkdir -p "$LOGS"
WORK="$(mktemp -d /tmp/foak_dp_gpu.XXXXXX)"
ROWS="$OUT/dp_gpu.jsonl"
MD="$OUT/dp_gpu.md"
: > "$ROWS"
skip() { case ",${DP_CHECK_SKIP:-}," in *",$1,"*) return 0 ;; esac; return 1; }
log() { echo "dp_gpu_check: $*" >&2; }

GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
if [ "$GPUS" -lt 2 ]; then
  log "needs 2 GPUs, this host has $GPUS"
  echo "dp_gpu_check: needs 2 GPUs, found $GPUS" > "$MD"
  exit 3
fi

# ranks N LOGPREFIX ARGS...: N ranks through `foak-worker launch` (torchrun's
# part); all ranks' output in LOGPREFIX.rank0.log; the failing rank's code.
ranks() {
  local n="$1" prefix="$2"; shift 2
  "$WORKER" launch --nproc-per-node "$n" -- "$@" > "$prefix.rank0.log" 2>&1
}

# bench_job NAME MODEL PRECISION ZERO BATCH SEQ: a benchmark job file, printed.
bench_job() {
  python3 - "$WORK" "$REPO" "$@" <<'PY'
import json, sys
work, repo, name, model, precision, zero, batch, seq = sys.argv[1:9]
job = {"name": name, "model": f"{repo}/bench/models/{model}", "output_dir": f"{work}/{name}",
       "device": "cuda",
       "hyperparameters": {"precision": precision, "zero_stage": int(zero), "ddp_timeout": 300},
       "bench": {"kernel_sets": ["all"], "batch_sizes": [int(batch)], "seq_lens": [int(seq)],
                 "warmup_steps": 3, "steps": 10}}
path = f"{work}/{name}.json"
json.dump(job, open(path, "w"))
print(path)
PY
}

# collect NAME GPUS: appends the run's rows (tagged) to dp_gpu.jsonl.
collect() {
  local name="$1" gpus="$2"
  if [ -s "$WORK/$1/bench.jsonl" ]; then
    python3 - "$WORK/$name/bench.jsonl" "$name" "$gpus" >> "$ROWS" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    row = json.loads(line)
    row["run"], row["world_size"] = sys.argv[2], int(sys.argv[3])
    print(json.dumps(row))
PY
  else
    echo "{\"run\": \"$name\", \"world_size\": $gpus, \"status\": \"failed\", \"error\": $(tail -c 400 "$LOGS/$name.rank0.log" 2>/dev/null | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')}" >> "$ROWS"
  fi
}

STATUS=0
if ! skip tests; then
  log "integration tests over NCCL"
  if FOAK_DP_TEST_DEVICE=cuda timeout 400 "$BUILD/tests/integration/data_parallel_test" \
       > "$LOGS/tests.log" 2>&1; then
    log "tests passed"
  else
    STATUS=1; log "tests FAILED (see dp_logs/tests.log)"
  fi
  grep -E '^\[  (PASSED|FAILED) |^\[       OK |^\[  FAILED' "$LOGS/tests.log" >&2
fi

if ! skip scaling; then
  log "1B scaling: 1 GPU, then 2"
  CUDA_VISIBLE_DEVICES=0 "$WORKER" train --job "$(bench_job 1b_1gpu llama-3.2-1b bf16 0 4 2048)" \
    > "$LOGS/1b_1gpu.rank0.log" 2>&1 || STATUS=1
  collect 1b_1gpu 1
  ranks 2 "$LOGS/1b_2gpu" train --job "$(bench_job 1b_2gpu llama-3.2-1b bf16 0 4 2048)" || STATUS=1
  collect 1b_2gpu 2
  ranks 2 "$LOGS/1b_2gpu_zero1" train --job "$(bench_job 1b_2gpu_zero1 llama-3.2-1b bf16 1 4 2048)" || STATUS=1
  collect 1b_2gpu_zero1 2
fi

if ! skip 8b; then
  log "8B full fine-tuning in bf16-mixed on 2 GPUs, sharded then not"
  ranks 2 "$LOGS/8b_2gpu_zero1" train --job "$(bench_job 8b_2gpu_zero1 llama-3-8b bf16-mixed 1 2 2048)" || STATUS=1
  collect 8b_2gpu_zero1 2
  ranks 2 "$LOGS/8b_2gpu_zero0" train --job "$(bench_job 8b_2gpu_zero0 llama-3-8b bf16-mixed 0 2 2048)" \
    || log "8B unsharded did not run (expected: out of memory)"
  collect 8b_2gpu_zero0 2
fi

if ! skip foakd; then
  log "fine-tunes through foakd on 2 GPUs"
  FOAK_CHECK_GPUS=2 timeout 200 bash "$REPO/scripts/foakd_gpu_check.sh" "$WORK/foakd" "$BUILD" \
    > "$LOGS/foakd.log" 2>&1 || { STATUS=1; log "foakd check FAILED"; }
  cp "$WORK/foakd/foakd.log" "$LOGS/foakd_server.log" 2>/dev/null
  find "$WORK/foakd" -name 'attempt-*-rank-*.log' -exec cp {} "$LOGS/" \; 2>/dev/null
fi

python3 - "$ROWS" > "$MD" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
gib = 2 ** 30
print("| run | GPUs | batch/GPU x seq | precision | tokens/s (job) | ms/step | peak GiB/GPU (rank 0) | status |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    ok = r.get("status") == "ok"
    print(f"| {r['run']} | {r.get('world_size')} | {r.get('batch', '-')} x {r.get('seq', '-')} | "
          f"{r.get('precision', '-')} | {r['tokens_per_second']:,.0f} | {r['ms_per_step']:.1f} | "
          f"{r['peak_allocated_bytes'] / gib:.2f} | ok |" if ok else
          f"| {r['run']} | {r.get('world_size')} | - | - | - | - | - | {r.get('status')}: "
          f"{str(r.get('error', ''))[-160:].replace(chr(10), ' ').replace('|', '/')} |")
tps = {r["run"]: r["tokens_per_second"] for r in rows if r.get("status") == "ok"}
if "1b_1gpu" in tps and "1b_2gpu" in tps:
    print(f"\nScaling efficiency, 1B 4x2048 per GPU: {tps['1b_2gpu']:,.0f} / (2 x {tps['1b_1gpu']:,.0f})"
          f" = {100 * tps['1b_2gpu'] / (2 * tps['1b_1gpu']):.1f}%")
if "1b_1gpu" in tps and "1b_2gpu_zero1" in tps:
    print(f"With zero_stage 1: {100 * tps['1b_2gpu_zero1'] / (2 * tps['1b_1gpu']):.1f}%")
PY
cat "$MD" >&2
rm -rf "$WORK"
exit "$STATUS"
