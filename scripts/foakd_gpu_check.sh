#!/usr/bin/env bash
# Fine-tuning on the GPU through the coordinator: starts foakd with
# --gpus auto, submits two jobs on the debug model with `foakctl submit
# --watch` -- full fine-tuning in pure bf16 with every FOAK kernel, and LoRA
# in bf16-mixed with the `foak` kernels and activation checkpointing -- and
# checks that each SUCCEEDED, ran on CUDA, and logged peak allocated and
# reserved GPU memory on every metrics line.
#
#   scripts/foakd_gpu_check.sh WORKDIR [BUILD_DIR]
# (FOAK_CHECK_GPUS=0 runs the same jobs on the CPU, to try the script here.)
set -euo pipefail
WORK="$1"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${2:-$REPO/build}"
rm -rf "$WORK" && mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
"$BUILD/worker/foak-worker" init-model --config "$REPO/examples/debug_model/config.json" \
  --out "$WORK/model" --seed 1
"$BUILD/server/transport/foakd" --listen 127.0.0.1:0 --metrics_listen 127.0.0.1:0 \
  --data_dir "$WORK/foakd" --worker "$BUILD/worker/foak-worker" --gpus auto \
  --port_file "$WORK/ports" > "$WORK/foakd.log" 2>&1 &
FOAKD=$!
trap 'kill -TERM $FOAKD 2>/dev/null; wait $FOAKD 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q '^grpc=' "$WORK/ports" 2>/dev/null && break; sleep 0.1; done
export FOAK_SERVER="127.0.0.1:$(sed -n 's/^grpc=//p' "$WORK/ports")"
python3 - "$REPO" "$WORK" "${FOAK_CHECK_GPUS:-1}" <<'PY'
import json, sys
repo, work = sys.argv[1], sys.argv[2]
base = json.load(open(f"{repo}/examples/demo_job.json"))
base["model"] = f"{work}/model"
for k in ("train", "validation"):
    base["dataset"][k] = f"{repo}/{base['dataset'][k]}"
base.pop("device", None)
base["resources"] = {"gpus": int(sys.argv[3])}
base["hyperparameters"]["max_steps"] = 40
full = dict(base, name="gpu-full", output_dir=f"{work}/out-full", kernels=["all"])
full["hyperparameters"] = dict(base["hyperparameters"], precision="bf16")
lora = dict(base, name="gpu-lora", output_dir=f"{work}/out-lora", kernels=["foak"],
            method="lora", lora={"r": 8, "alpha": 16})
lora["hyperparameters"] = dict(base["hyperparameters"], precision="bf16-mixed",
                               gradient_checkpointing=True, learning_rate=0.01)
for job in (full, lora):
    json.dump(job, open(f"{work}/{job['name']}.json", "w"), indent=2)
PY
CLI="$BUILD/client/foakctl"
for name in gpu-full gpu-lora; do
  echo "== foakctl submit -f $name.json --watch"
  "$CLI" submit -f "$WORK/$name.json" --watch
done
"$CLI" list
python3 - "$WORK" "${FOAK_CHECK_GPUS:-1}" <<'PY'
import json, sys
work, gpu = sys.argv[1], int(sys.argv[2]) > 0
for name in ("full", "lora"):
    lines = [json.loads(l) for l in open(f"{work}/out-{name}/metrics.jsonl")]
    steps = [l for l in lines if "loss" in l]
    evals = [l for l in lines if "eval_loss" in l]
    assert steps and all(l["peak_memory_bytes"] > 0 and (l.get("peak_reserved_bytes", 0) > 0 or not gpu)
                         for l in steps), name
    print(f"{name}: {len(steps)} metric lines, loss {steps[0]['loss']:.3f} -> {steps[-1]['loss']:.3f}, "
          f"eval_loss {evals[-1]['eval_loss']:.3f}, peak allocated {steps[-1]['peak_memory_bytes'] / 2**20:.0f} MiB, "
          f"reserved {steps[-1].get('peak_reserved_bytes', 0) / 2**20:.0f} MiB, "
          f"{steps[-1]['tokens_per_second']:.0f} tokens/s")
    assert steps[-1]["loss"] < steps[0]["loss"], f"{name}: loss did not fall"
PY
grep -rh --text -m2 "foak-worker: training .* on cuda" "$WORK/foakd" --include="*.log" || true
echo "foakd_gpu_check: OK"
