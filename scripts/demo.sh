#!/usr/bin/env bash
# The main job on a fresh machine, as a user runs foak: installs what is
# missing, builds foakd, foakctl and foak-worker, creates the random-initialised
# debug Llama model (no downloads), starts foakd on its embedded defaults
# (SQLite in demo/foakd-data, local launcher, CPU unless a GPU is usable),
# submits examples/demo_job.json with foakctl and watches it to the end: the
# debug model fine-tuned on the arithmetic chat data, with validation loss on
# arith_valid.jsonl. Output: demo/out/metrics.jsonl and the final Hugging Face
# model in demo/out/final/; foakd's job history stays in demo/foakd-data.
#
#   scripts/demo.sh          full fine-tune
#   scripts/demo.sh --lora   then also the LoRA job (examples/lora_job.json): the
#                            PEFT adapter in demo/out-lora/final/, merged model
#                            in demo/out-lora/merged/
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
bash scripts/build.sh foak-worker foakd foakctl
BUILD_DIR="${FOAK_BUILD_DIR:-build}"
WORKER="$BUILD_DIR/worker/foak-worker"
FOAKD="$BUILD_DIR/server/transport/foakd"
FOAKCTL="$BUILD_DIR/client/foakctl"
mkdir -p demo
if [ ! -f demo/debug-model/config.json ]; then
  "$WORKER" init-model --config examples/debug_model/config.json --out demo/debug-model --seed 1
fi
# A fresh output each time (a folder holding another run's checkpoints is refused).
rm -rf demo/out demo/out-lora demo/foakd.ports

# GPU jobs only when this LibTorch has CUDA and the host has an NVIDIA device.
GPUS=0
if grep -q "FOAK_TORCH_HAS_CUDA:INTERNAL=ON" "$BUILD_DIR/CMakeCache.txt" 2>/dev/null && [ -e /dev/nvidia0 ]; then
  GPUS=1
fi
# foakd on free ports (another foakd may hold the defaults), stopped on exit.
"$FOAKD" --data_dir demo/foakd-data --listen 127.0.0.1:0 --metrics_listen 127.0.0.1:0 \
  --worker "$WORKER" --gpus "$([ "$GPUS" = 1 ] && echo auto || echo none)" \
  --port_file demo/foakd.ports 2>demo/foakd.log &
FOAKD_PID=$!
trap 'kill -TERM $FOAKD_PID 2>/dev/null; wait $FOAKD_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  [ -s demo/foakd.ports ] && break
  kill -0 $FOAKD_PID 2>/dev/null || { cat demo/foakd.log >&2; exit 1; }
  sleep 0.1
done
GRPC_PORT="$(sed -n 's/^grpc=//p' demo/foakd.ports)"
METRICS_PORT="$(sed -n 's/^metrics=//p' demo/foakd.ports)"
export FOAK_SERVER="127.0.0.1:$GRPC_PORT"
echo "demo: foakd on $FOAK_SERVER (metrics: http://127.0.0.1:$METRICS_PORT/metrics, log: demo/foakd.log)"

"$FOAKCTL" submit -f examples/demo_job.json --gpus "$GPUS" --watch
"$FOAKCTL" list --limit 5
echo "demo: metrics in demo/out/metrics.jsonl, final model in demo/out/final/"
if [ "$LORA" = 1 ]; then
  "$FOAKCTL" submit -f examples/lora_job.json --gpus "$GPUS" --watch
  echo "demo: LoRA adapter in demo/out-lora/final/, merged model in demo/out-lora/merged/"
fi
