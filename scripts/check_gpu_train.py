#!/usr/bin/env python3
"""Trains the debug model with foak-worker on CUDA in each precision and with
each FOAK kernel set, and checks every run: finite losses that fall, a final
Hugging Face checkpoint, metrics on every logged step. A run with kernels must
follow the loss curve of the same precision without kernels over its first 20
logged losses (the demo job logs every 10th step, so the whole run): within 1e-3 relative in fp32; in bf16 within bf16's own noise, i.e.
no further than 1.5x the distance between the plain bf16 and plain fp32 runs
(at least 2e-2); and its last loss within 5%. Standard library only; used by
scripts/gpu_host.sh.

  check_gpu_train.py --worker BUILD/worker/foak-worker --work DIR [--device cuda]
      [--runs bf16-mixed:none,bf16-mixed:all,...]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--runs", default="bf16-mixed:none,bf16:none,fp32:none,"
                    "bf16-mixed:foak,bf16-mixed:all,bf16:all,fp32:all",
                    help="precision:kernels pairs; kernels is none, foak, all or one op name")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    model = os.path.join(args.work, "debug-model")
    subprocess.run([args.worker, "init-model", "--config",
                    os.path.join(REPO, "examples/debug_model/config.json"), "--out", model,
                    "--seed", "1"], check=True)
    with open(os.path.join(REPO, "examples/demo_job.json")) as f:
        base = json.load(f)
    failures = []
    print(f"{'precision':<11} {'kernels':<8} {'device':<6} {'steps':>5} {'loss first':>10} "
          f"{'loss last':>9} {'tokens/s':>9} {'peak MiB':>8} {'wall s':>6}  result")
    plain = {}  # precision -> losses without kernels
    for run in args.runs.split(","):
        precision, kernels = run.split(":")
        tag = f"{precision}-{kernels}"
        job = json.loads(json.dumps(base))
        job["name"] = f"gpu-{tag}"
        if kernels != "none":
            job["kernels"] = [kernels]
        job["model"] = model
        for key in ("train", "validation"):
            if base["dataset"].get(key):
                job["dataset"][key] = os.path.join(REPO, base["dataset"][key])
        job["output_dir"] = os.path.join(args.work, f"out-{tag}")
        job["device"] = args.device
        job["hyperparameters"]["precision"] = precision
        job_path = os.path.join(args.work, f"job-{tag}.json")
        with open(job_path, "w") as f:
            json.dump(job, f, indent=2)
        t0 = time.time()
        proc = subprocess.run([args.worker, "train", "--job", job_path], capture_output=True,
                              text=True, timeout=240)
        wall = time.time() - t0
        problems = []
        if proc.returncode != 0:
            problems.append(f"rc {proc.returncode}: {proc.stderr.strip()[-400:]}")
        rows = []
        metrics = os.path.join(job["output_dir"], "metrics.jsonl")
        if os.path.exists(metrics):
            with open(metrics) as f:
                rows = [json.loads(line) for line in f if line.strip()]
            rows = [r for r in rows if "loss" in r]  # eval lines carry eval_loss only
        losses = [r.get("loss") for r in rows if "loss" in r]
        if not losses or any(v is None or not math.isfinite(v) for v in losses):
            problems.append(f"losses not all finite: {losses[:5]}")
        elif not losses[-1] < 0.8 * losses[0]:
            problems.append(f"loss did not fall by 20%: {losses[0]:.3f} -> {losses[-1]:.3f}")
        if kernels == "none" and losses:
            plain[precision] = losses
        elif losses and precision in plain:
            ref = plain[precision]
            early = max(abs(a - b) / abs(b) for a, b in zip(losses[:20], ref[:20]))
            tol = 1e-3
            if precision != "fp32":
                noise = 0.0
                if "fp32" in plain:
                    noise = max(abs(a - b) / abs(b) for a, b in zip(ref[:20], plain["fp32"][:20]))
                tol = max(2e-2, 1.5 * noise)
            if early > tol:
                problems.append(f"first 20 logged losses differ from no kernels by {early:.2e} > {tol}")
            if abs(losses[-1] - ref[-1]) > 0.05 * abs(ref[-1]):
                problems.append(f"last loss {losses[-1]:.4f} vs {ref[-1]:.4f} without kernels")
            print(f"    {tag} vs no kernels: max rel diff over the first 20 logged losses {early:.2e} "
                  f"(tolerance {tol:.2e}), last {losses[-1]:.4f} vs {ref[-1]:.4f}")
        final = os.path.join(job["output_dir"], "final")
        for name in ("config.json", "model.safetensors"):
            if not os.path.exists(os.path.join(final, name)):
                problems.append(f"no {name} in {final}")
        last = rows[-1] if rows else {}
        tps = max((r.get("tokens_per_second", 0) for r in rows), default=0)
        peak = last.get("peak_memory_bytes", 0) / 2**20
        print(f"{precision:<11} {kernels:<8} {args.device:<6} {last.get('step', 0):>5} "
              f"{(losses or [float('nan')])[0]:>10.4f} {(losses or [float('nan')])[-1]:>9.4f} "
              f"{tps:>9.0f} {peak:>8.1f} {wall:>6.1f}  {'ok' if not problems else 'FAIL'}")
        for p in problems:
            print(f"    {p}")
        failures += problems
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
