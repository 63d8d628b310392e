#!/usr/bin/env python3
"""Checks, on the GPU host, that foak and Hugging Face transformers read each
other's checkpoints and compute the same logits.

Run after the build (scripts/gpu_host.sh does):
    python3 scripts/check_hf_load.py [--worker build/worker/foak-worker]
        [--work DIR] [--report FILE] [--fixtures DIR] [--tol 1e-5]

Directions, for every config (examples/debug_model, tests/testdata/parity/*,
and --fixtures/* when given):
  foak->hf        `foak-worker init-model` writes a random model; transformers
                  loads it (no missing, unexpected or mismatched tensors
                  allowed) and its fp32 CPU logits must equal those of
                  `foak-worker forward --device cpu` on the same ids.
  foak->hf cuda   the same foak model run by `foak-worker forward --device cuda`
                  (fp32; LibTorch keeps TF32 off by default) against the same
                  transformers logits, within 1e-4 (summation order differs).
  hf->foak        transformers random-inits the config (norms and biases
                  perturbed so that dropping them shows), save_pretrained; foak
                  loads and runs it.
  hf->foak shard  the same model saved in several shards
                  (model.safetensors.index.json).
  hf->foak bf16   the same model saved in bfloat16; transformers reloads it in
                  fp32 and foak converts bf16 -> fp32 while loading.
The error is max|foak - hf| / max|hf| over the logits. A table goes to stdout
and --report; the exit status is 1 when any row fails, 2 on bad setup.
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
B, T = 2, 12


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", default=os.path.join(REPO, "build", "worker", "foak-worker"))
    p.add_argument("--work", default="/tmp/foak_check_hf_load")
    p.add_argument("--report", default="")
    p.add_argument("--fixtures", default="", help="extra folder of <case>/config.json")
    p.add_argument("--tol", type=float, default=1e-5, help="fp32 CPU tolerance")
    p.add_argument("--cuda-tol", type=float, default=1e-4)
    p.add_argument("--no-cuda", action="store_true")
    return p.parse_args()


def config_paths(fixtures):
    paths = [os.path.join(REPO, "examples", "debug_model", "config.json")]
    paths += sorted(glob.glob(os.path.join(REPO, "tests", "testdata", "parity", "*", "config.json")))
    if fixtures:
        paths += sorted(glob.glob(os.path.join(fixtures, "*", "config.json")))
    return [p for p in paths if os.path.isfile(p)]


def case_name(path):
    parent = os.path.basename(os.path.dirname(path))
    grand = os.path.basename(os.path.dirname(os.path.dirname(path)))
    return parent if grand in ("parity", "examples") else f"{grand}/{parent}"


class Runner:
    def __init__(self, args, torch, transformers):
        self.args = args
        self.torch = torch
        self.transformers = transformers
        self.rows = []

    def worker(self, *argv):
        cmd = [self.args.worker, *argv]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        print(f"$ {' '.join(cmd)[:300]}  -> rc {proc.returncode} ({time.time() - t0:.1f}s)")
        if proc.returncode != 0:
            raise RuntimeError(f"foak-worker failed (rc {proc.returncode}): "
                               f"{proc.stderr.strip()[-600:]}")
        return proc

    def foak_logits(self, model_dir, ids, device):
        out = os.path.join(self.args.work,
                           f"{os.path.basename(model_dir)}_{device}.logits.safetensors")
        ids_text = ";".join(",".join(str(int(v)) for v in row) for row in ids.tolist())
        self.worker("forward", "--model", model_dir, "--input-ids", ids_text, "--out", out,
                    "--device", device, "--dtype", "float32")
        from safetensors.torch import load_file
        t = load_file(out)
        for key in ("logits", "input_ids"):
            if key not in t:
                raise RuntimeError(f"{out} lacks '{key}' (has {sorted(t)})")
        if not self.torch.equal(t["input_ids"], ids):
            raise RuntimeError(f"{out}: input_ids differ from the ids passed")
        return t["logits"]

    def hf_load(self, model_dir):
        kwargs = dict(output_loading_info=True, attn_implementation="eager")
        AutoModel = self.transformers.AutoModelForCausalLM
        # transformers 5 names it dtype; 4.x torch_dtype.
        if int(self.transformers.__version__.split(".")[0]) >= 5:
            kwargs["dtype"] = self.torch.float32
        else:
            kwargs["torch_dtype"] = self.torch.float32
        try:
            model, info = AutoModel.from_pretrained(model_dir, **kwargs)
        except TypeError as e:  # should output_loading_info ever go away
            if "output_loading_info" not in str(e):
                raise
            del kwargs["output_loading_info"]
            model, info = AutoModel.from_pretrained(model_dir, **kwargs), None
            print(f"  note: no loading info from this transformers ({e})")
        problems = []
        for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
            if info is None:
                break
            vals = info.get(key) if isinstance(info, dict) else getattr(info, key, None)
            vals = list(vals or [])
            if vals:
                problems.append(f"{key}={vals[:4]}{'...' if len(vals) > 4 else ''}")
        return model.eval(), problems

    def hf_logits(self, model, ids):
        with self.torch.no_grad():
            return model(input_ids=ids).logits.float()

    def compare(self, case, direction, device, got, ref, tol, problems=()):
        torch = self.torch
        if got.shape != ref.shape:
            err, ok = float("inf"), False
            note = f"shape {tuple(got.shape)} vs {tuple(ref.shape)}"
        else:
            g, r = got.double(), ref.double()
            err = ((g - r).abs().max() / r.abs().max().clamp_min(1e-30)).item()
            finite = bool(torch.isfinite(g).all())
            ok = finite and err <= tol and not problems
            note = "; ".join(problems) if problems else ("" if finite else "non-finite logits")
        self.rows.append(dict(case=case, direction=direction, device=device, err=err, tol=tol,
                              ok=ok, note=note))
        print(f"  {case} {direction} {device}: max rel {err:.3e} (tol {tol:g}) "
              f"{'ok' if ok else 'FAIL'} {note}")

    def fail(self, case, direction, device, message):
        self.rows.append(dict(case=case, direction=direction, device=device, err=float("nan"),
                              tol=float("nan"), ok=False, note=message[-300:]))
        print(f"  {case} {direction} {device}: FAIL {message}")

    def ids_for(self, vocab, seed):
        g = self.torch.Generator().manual_seed(seed)
        return self.torch.randint(0, vocab, (B, T), generator=g)

    def foak_to_hf(self, case, config_path, use_cuda):
        out_dir = os.path.join(self.args.work, "foak_" + case.replace("/", "_"))
        shutil.rmtree(out_dir, ignore_errors=True)
        try:
            self.worker("init-model", "--config", config_path, "--out", out_dir, "--seed", "1")
            with open(os.path.join(out_dir, "config.json")) as f:
                vocab = json.load(f)["vocab_size"]
            ids = self.ids_for(vocab, 7)
            model, problems = self.hf_load(out_dir)
            ref = self.hf_logits(model, ids)
            self.compare(case, "foak->hf", "cpu", self.foak_logits(out_dir, ids, "cpu"), ref,
                         self.args.tol, problems)
        except Exception as e:  # one broken case must not hide the others
            self.fail(case, "foak->hf", "cpu", f"{type(e).__name__}: {e}")
            return
        if use_cuda:
            try:
                self.compare(case, "foak->hf", "cuda", self.foak_logits(out_dir, ids, "cuda"), ref,
                             self.args.cuda_tol, problems)
            except Exception as e:
                self.fail(case, "foak->hf", "cuda", f"{type(e).__name__}: {e}")

    def hf_to_foak(self, case, config_path):
        torch, transformers = self.torch, self.transformers
        base = os.path.join(self.args.work, "hf_" + case.replace("/", "_"))
        try:
            config = transformers.AutoConfig.from_pretrained(os.path.dirname(config_path))
            torch.manual_seed(3)
            model = transformers.AutoModelForCausalLM.from_config(config)
            model = model.float().eval()
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if "norm" in name:
                        p.add_(0.1 * torch.randn_like(p))
                    elif name.endswith(".bias"):
                        p.add_(0.05 * torch.randn_like(p))
            ids = self.ids_for(config.vocab_size, 11)
        except Exception as e:
            self.fail(case, "hf->foak", "cpu", f"{type(e).__name__}: {e}")
            return
        # (direction, folder suffix, save_pretrained kwargs, dtype on disk); each
        # variant is reloaded by transformers in fp32 so both sides compute from
        # exactly what is on disk.
        variants = [("hf->foak", "", {}, torch.float32),
                    ("hf->foak shard", "_shard", {"max_shard_size": "100KB"}, torch.float32),
                    ("hf->foak bf16", "_bf16", {}, torch.bfloat16)]
        for direction, suffix, save_kwargs, dtype in variants:
            d = base + suffix
            try:
                shutil.rmtree(d, ignore_errors=True)
                model.to(dtype).save_pretrained(d, **save_kwargs)
                model.float()
                if save_kwargs and not os.path.exists(
                        os.path.join(d, "model.safetensors.index.json")):
                    self.fail(case, direction, "cpu", "transformers wrote no sharded index")
                    continue
                ref_model, _ = self.hf_load(d)
                self.compare(case, direction, "cpu", self.foak_logits(d, ids, "cpu"),
                             self.hf_logits(ref_model, ids), self.args.tol)
            except Exception as e:
                model.float()
                self.fail(case, direction, "cpu", f"{type(e).__name__}: {e}")

def main():
    args = parse_args()
    if not os.access(args.worker, os.X_OK):
        print(f"check_hf_load: no executable foak-worker at {args.worker}; build it first "
              f"(ninja -C build foak-worker) or pass --worker", file=sys.stderr)
        return 2
    try:
        import torch
        import transformers
        import safetensors  # noqa: F401
    except ImportError as e:
        print(f"check_hf_load: needs torch, transformers and safetensors: {e}", file=sys.stderr)
        return 2
    os.makedirs(args.work, exist_ok=True)
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    use_cuda = torch.cuda.is_available() and not args.no_cuda
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"cuda rows: {use_cuda}, worker {args.worker}")

    runner = Runner(args, torch, transformers)
    configs = config_paths(args.fixtures)
    if not configs:
        print("check_hf_load: no config.json found", file=sys.stderr)
        return 2
    for path in configs:
        case = case_name(path)
        print(f"== {case} ({path})")
        runner.foak_to_hf(case, path, use_cuda)
        runner.hf_to_foak(case, path)

    lines = [f"check_hf_load: torch {torch.__version__}, transformers {transformers.__version__}",
             "max rel = max|foak - hf| / max|hf| over the logits",
             f"{'case':<24} {'direction':<15} {'device':<6} {'max rel':>10} {'tol':>7}  result  note"]
    for r in runner.rows:
        lines.append(f"{r['case']:<24} {r['direction']:<15} {r['device']:<6} {r['err']:>10.3e} "
                     f"{r['tol']:>7.0e}  {'ok' if r['ok'] else 'FAIL':<6}  {r['note']}")
    failed = [r for r in runner.rows if not r["ok"]]
    lines.append(f"{len(runner.rows) - len(failed)}/{len(runner.rows)} rows ok")
    print("\n".join(lines))
    if args.report:
        with open(args.report, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 1 if failed or not runner.rows else 0


if __name__ == "__main__":
    sys.exit(main())
