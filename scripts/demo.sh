#!/usr/bin/env bash
# The main job on a fresh machine: installs what is missing, builds foak-worker,
# creates the random-initialised debug Llama model (no downloads) and fine-tunes
# it on the arithmetic chat data (examples/data/arith_train.jsonl, validation
# loss on arith_valid.jsonl) with examples/demo_job.json. Runs on the GPU when
# LibTorch has one, else on the CPU. Output: demo/out/metrics.jsonl (training
# loss every 10 steps, eval_loss every 20) and the final Hugging Face model in
# demo/out/final/.
#
#   scripts/demo.sh          full fine-tune
#   scripts/demo.sh --lora   also the LoRA job (examples/lora_job.json): the PEFT
#                            adapter in demo/out-lora/final/, merged model in
#                            demo/out-lora/merged/
set -euo pipefail
cd "$(dirname "$0")/.."
LORA=0
for arg in "$@"; do
  case "$arg" in
    --lora) LORA=1 ;;
    *) echo "usage: scripts/demo.sh [--lora]" >&2; exit 2 ;;
  esac
done
bash scripts/install_deps.sh
bash scripts/build.sh foak-worker
BUILD_DIR="${FOAK_BUILD_DIR:-build}"
WORKER="$BUILD_DIR/worker/foak-worker"
if [ ! -f demo/debug-model/config.json ]; then
  "$WORKER" init-model --config examples/debug_model/config.json --out demo/debug-model --seed 1
fi
# A fresh run each time (metrics.jsonl is appended to, and a folder holding
# checkpoints of another run is refused).
rm -rf demo/out
"$WORKER" train --job examples/demo_job.json
echo "demo: metrics in demo/out/metrics.jsonl, final model in demo/out/final/"
if [ "$LORA" = 1 ]; then
  rm -rf demo/out-lora
  "$WORKER" train --job examples/lora_job.json
  echo "demo: LoRA adapter in demo/out-lora/final/, merged model in demo/out-lora/merged/"
fi
