#!/usr/bin/env bash
# The main job on a fresh machine: installs what is missing, builds foak-worker,
# creates the random-initialised debug Llama model (no downloads) and fine-tunes
# it on examples/data/demo_train.jsonl with examples/demo_job.json. Runs on the
# GPU when LibTorch has one, else on the CPU. Output: demo/out/metrics.jsonl and
# the final Hugging Face checkpoint in demo/out/final/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/build.sh foak-worker
BUILD_DIR="${FOAK_BUILD_DIR:-build}"
WORKER="$BUILD_DIR/worker/foak-worker"
if [ ! -f demo/debug-model/config.json ]; then
  "$WORKER" init-model --config examples/debug_model/config.json --out demo/debug-model --seed 1
fi
"$WORKER" train --job examples/demo_job.json
echo "demo: metrics in demo/out/metrics.jsonl, final checkpoint in demo/out/final/"
