#!/usr/bin/env python3
"""The Hugging Face transformers peer of foak's benchmark jobs.

Why: foak's benchmark (JobConfig::bench, rows in bench.jsonl or `foakctl bench
-o json`) reports tokens/s and peak GPU memory per kernel set. Those numbers
only mean something next to the usual way of fine-tuning the same model, so
this script times that usual way -- eager transformers (no torch.compile),
SDPA attention, PyTorch's fused AdamW -- on the same card, in the same run,
with the same workload and the same clock, and writes rows with foak's field
names (worker/train/bench_result.h) so that bench/bench_table.py tabulates
both side by side (framework "transformers", kernels "none").

What is measured, per row (model architecture x method x batch x seq):
  * the model is built from the folder's config.json with random weights
    directly on cuda:0 (no checkpoint, no network: from_config, never
    from_pretrained); a fresh model and optimizer for every row (but the
    largest-batch row, below);
  * precision is PURE bf16 on both sides: the model's parameters are bf16,
    gradients are bf16, AdamW keeps its state in the parameters' dtype (bf16);
    no autocast, no fp32 master weights. For LoRA, peft's
    get_peft_model(..., autocast_adapter_dtype=False) keeps the adapters in
    bf16 too (peft would otherwise upcast them to fp32);
  * LoRA: rank 16, alpha 16, dropout 0, target_modules "all-linear" (every
    linear layer but lm_head) unless told otherwise; only trainable
    parameters go to the optimizer;
  * one step = loss = model(input_ids=ids, labels=ids).loss (transformers
    shifts the labels itself and upcasts the logits to fp32: the baseline
    behaviour foak is compared against) + backward +
    clip_grad_norm_(params, 1.0, foreach) + AdamW (lr 1e-5, betas 0.9/0.999,
    eps 1e-8, weight decay 0, fused=True) + zero_grad(set_to_none=True);
  * tokens/s = batch * seq * steps / wall seconds of the `steps` timed steps
    that follow `warmup` untimed ones, with torch.cuda.synchronize() before
    the clock starts and after the last step (no host sync inside the loop);
  * peak memory = torch.cuda.max_memory_allocated / max_memory_reserved after
    reset_peak_memory_stats() taken right after the model and optimizer are
    built, so it includes weights, gradients, optimizer state and activations;
  * random tokens, uniform in [0, vocab_size), from a fixed seed; one batch
    reused every step (foak does the same);
  * loss_first is the first warm-up step's loss, loss_last the last timed
    step's (about ln(vocab_size) on random data).

--find-max-batch also finds, per seq, the largest batch that completes two
training steps (doubling from the largest --batch, then bisection down to a
resolution of max(1, batch // 8), as foak's search, on one model and
optimizer for all trials) and times it on that same model as one more row
with max_batch true (one step down, once, should the timed run not fit), as
foak does. Rows come in foak's order: every seq x batch, then one
largest-batch row per seq.

Rows are appended to --out (JSON Lines; stdout without --out) as each one
completes, so a killed run keeps what it measured; a line per row also goes
to stderr. Exit status: 0 when every row is "ok" or "out_of_memory", 1 when
a row is "error", 2 on bad arguments or setup (no torch, no CUDA, ...).

Usage (on the GPU host):
  python3 bench/hf_peer.py --model bench/models/llama-3.2-1b --method full \\
      --batch 4,16 --seq 512,2048 [--steps 10] [--warmup 3] \\
      [--find-max-batch] [--max-batch-limit 1024] [--gradient-checkpointing] \\
      [--lora-r 16 --lora-alpha 16 --lora-dropout 0.0 \\
       --lora-target-modules all-linear] [--precision bf16] [--seed 0] \\
      [--out FILE.jsonl]

The helpers above main() need only the standard library (torch is imported
lazily), so tests/scripts/hf_peer_test.py runs them on any machine.
"""
import argparse
import gc
import json
import math
import os
import sys
import time
import traceback

# foak's BenchResultToJson field order (worker/train/bench_result.cc).
FIELDS = (
    "index", "total", "framework", "model", "method", "kernels", "gpus", "batch", "seq",
    "precision", "activation_checkpointing", "status", "error", "tokens_per_second",
    "pct_change", "ms_per_step", "peak_allocated_bytes", "peak_reserved_bytes", "loss_first",
    "loss_last", "warmup_steps", "steps", "max_batch", "device",
)

FRAMEWORK = "transformers"
KERNELS = "none"
DEVICE = "cuda:0"
PRECISION = "bf16"
SEARCH_STEPS = 2  # training steps a batch must complete to "fit" in the max-batch search
LR, BETAS, EPS, WEIGHT_DECAY, MAX_GRAD_NORM = 1e-5, (0.9, 0.999), 1e-8, 0.0, 1.0
ERROR_CHARS = 600  # error messages in rows are cut to this length


class SetupError(Exception):
    """Bad arguments or environment: nothing can be measured."""


class BuildError(Exception):
    """Building the model or optimizer failed (not for lack of memory)."""


class OutOfMemory(Exception):
    """The device ran out of memory; the message is the allocator's first line."""


# ---------------------------------------------------------------- arguments


def _int_list(text, name, minimum):
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--{name} wants integers joined by ',', got {text!r}")
    if not values or min(values) < minimum:
        raise argparse.ArgumentTypeError(f"--{name} wants integers >= {minimum}, got {text!r}")
    return values


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Times eager Hugging Face transformers (pure bf16, SDPA, fused AdamW) on "
                    "random tokens and writes rows in foak's bench.jsonl format.")
    p.add_argument("--model", required=True, help="folder with a Hugging Face config.json")
    p.add_argument("--method", required=True, choices=("full", "lora"))
    p.add_argument("--batch", default="4", type=lambda s: _int_list(s, "batch", 1),
                   help="batch sizes, e.g. 4,16 (default 4)")
    p.add_argument("--seq", default="2048", type=lambda s: _int_list(s, "seq", 2),
                   help="sequence lengths, e.g. 512,2048 (default 2048)")
    p.add_argument("--steps", type=int, default=10, help="timed optimizer steps per row")
    p.add_argument("--warmup", type=int, default=3, help="untimed optimizer steps before them")
    p.add_argument("--find-max-batch", action="store_true",
                   help="also find and time the largest batch that fits, per seq")
    p.add_argument("--max-batch-limit", type=int, default=1024)
    p.add_argument("--precision", default=PRECISION, choices=(PRECISION,),
                   help="only pure bf16 (bf16 parameters, no autocast)")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="transformers' gradient checkpointing (non-reentrant)")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-alpha", type=float, default=16)
    p.add_argument("--lora-dropout", type=float, default=0.0)
    p.add_argument("--lora-target-modules", default="all-linear",
                   help="'all-linear' or module names joined by ','")
    p.add_argument("--out", default="", help="JSON Lines file the rows are appended to "
                                            "(default: stdout)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if args.max_batch_limit < 1:
        p.error("--max-batch-limit must be >= 1")
    if args.lora_r < 1:
        p.error("--lora-r must be >= 1")
    if not 0 <= args.lora_dropout < 1:
        p.error("--lora-dropout must be in [0, 1)")
    if float(args.lora_alpha).is_integer():
        args.lora_alpha = int(args.lora_alpha)
    args.model = os.path.abspath(args.model.rstrip("/") or "/")
    args.model_name = os.path.basename(args.model)
    return args


def read_model_config(folder):
    """The folder's config.json as a dict; SetupError says what is wrong."""
    path = os.path.join(folder, "config.json")
    if not os.path.isdir(folder):
        raise SetupError(f"--model {folder}: no such folder (it should hold a Hugging Face "
                         "config.json)")
    if not os.path.isfile(path):
        raise SetupError(f"--model {folder}: no config.json in it")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise SetupError(f"{path}: cannot read it as JSON: {e}")
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise SetupError(f"{path}: no \"model_type\" string (e.g. \"llama\")")
    vocab = config.get("vocab_size")
    if not isinstance(vocab, int) or vocab < 2:
        raise SetupError(f"{path}: \"vocab_size\" must be an integer >= 2, got {vocab!r}")
    return config


def lora_target_modules(text):
    """'all-linear' stays a string (peft's shorthand); anything else is a list."""
    if text.strip() == "all-linear":
        return "all-linear"
    return [name.strip() for name in text.split(",") if name.strip()]


# ---------------------------------------------------------------- pure helpers


def resolution(batch):
    """The max-batch search stops once the bracket is this narrow (foak's rule)."""
    return max(1, batch // 8)


def search_max_batch(fits, start, limit):
    """The largest batch in [1, limit] for which fits(batch) is True, assuming
    fits is monotone, within resolution(): doubles from `start` while it fits,
    then bisects between the last fit and the first failure. When `start`
    does not fit, halves until one does. Returns (best, trials) where best is
    0 when not even batch 1 fits and trials lists (batch, fitted) in order."""
    trials = []

    def attempt(batch):
        ok = bool(fits(batch))
        trials.append((batch, ok))
        return ok

    limit = max(1, int(limit))
    start = min(max(1, int(start)), limit)
    if attempt(start):
        lo, hi = start, None
        while lo < limit:
            nxt = min(lo * 2, limit)
            if attempt(nxt):
                lo = nxt
            else:
                hi = nxt
                break
        if hi is None:
            return lo, trials
    else:
        lo, hi = 0, start
        while hi > 1:
            nxt = hi // 2
            if attempt(nxt):
                lo = nxt
                break
            hi = nxt
        if lo == 0:
            return 0, trials
    while hi - lo > resolution(lo):
        mid = (lo + hi) // 2
        if attempt(mid):
            lo = mid
        else:
            hi = mid
    return lo, trials


def plan_rows(batches, seqs, find_max_batch):
    """The rows of one invocation in foak's order: (kind, seq, batch), kind
    "fixed" for every seq x --batch, then "max" (batch None) once per seq."""
    items = [("fixed", seq, batch) for seq in seqs for batch in batches]
    if find_max_batch:
        items += [("max", seq, None) for seq in seqs]
    return items


def _finite_or_none(x):
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def make_row(*, index, total, model, method, batch, seq, warmup_steps, steps,
             activation_checkpointing, status, error="", measurement=None, max_batch=False,
             extra=None):
    """One result row with foak's field names (FIELDS, in that order) then the
    extras. measurement (status "ok"): seconds (wall time of the timed steps),
    loss_first, loss_last, peak_allocated_bytes, peak_reserved_bytes, and
    optionally more keys that are copied as extras. A non-finite loss turns
    an "ok" row into an "error" one; JSON gets null for it."""
    m = dict(measurement or {})
    seconds = float(m.pop("seconds", 0.0) or 0.0)
    loss_first = _finite_or_none(m.pop("loss_first", None))
    loss_last = _finite_or_none(m.pop("loss_last", None))
    peak_alloc = int(m.pop("peak_allocated_bytes", 0) or 0)
    peak_reserved = int(m.pop("peak_reserved_bytes", 0) or 0)
    non_finite = status == "ok" and (loss_first is None or loss_last is None)
    if non_finite:
        status = "error"
        error = "non-finite loss (weights or gradients blew up)"
    elif status != "ok":
        loss_first = loss_last = 0.0  # as foak's rows: nothing measured
    timed = status == "ok" and seconds > 0
    row = {
        "index": index, "total": total, "framework": FRAMEWORK, "model": model,
        "method": method, "kernels": KERNELS, "gpus": 1, "batch": int(batch), "seq": int(seq),
        "precision": PRECISION, "activation_checkpointing": bool(activation_checkpointing),
        "status": status, "error": (error or "")[:ERROR_CHARS],
        "tokens_per_second": batch * seq * steps / seconds if timed else 0.0,
        "pct_change": None,
        "ms_per_step": 1000.0 * seconds / steps if timed else 0.0,
        "peak_allocated_bytes": peak_alloc, "peak_reserved_bytes": peak_reserved,
        "loss_first": loss_first, "loss_last": loss_last,
        "warmup_steps": warmup_steps, "steps": steps, "max_batch": bool(max_batch),
        "device": DEVICE,
    }
    row.update(m)
    row.update(extra or {})
    return row


def describe_row(row):
    """The human-readable stderr line of a row."""
    head = (f"[{row['index'] + 1}/{row['total']}] {row['framework']} {row['model']} "
            f"{row['method']} batch {row['batch']} seq {row['seq']}"
            f"{' (largest batch)' if row['max_batch'] else ''}: ")
    if row["status"] != "ok":
        return head + f"{row['status']}: {row['error']}"
    gib = 2 ** 30
    return head + (f"{row['tokens_per_second']:,.0f} tokens/s, {row['ms_per_step']:.1f} ms/step, "
                   f"peak {row['peak_allocated_bytes'] / gib:.2f} GiB allocated "
                   f"({row['peak_reserved_bytes'] / gib:.2f} reserved), "
                   f"loss {row['loss_first']:.4f} -> {row['loss_last']:.4f}")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the plan


def _status_of(measure, *argv):
    """(status, error, measurement) of measure(*argv), which times one row."""
    try:
        return "ok", "", measure(*argv)
    except OutOfMemory as e:
        return "out_of_memory", str(e), None
    except BuildError as e:
        return "error", str(e), None
    except Exception as e:  # noqa: BLE001 - a row's failure must not end the run
        traceback.print_exc(file=sys.stderr)
        return "error", f"{type(e).__name__}: {e}", None


def _search_and_time(prober, seq, start, limit):
    """(batch, status, error, measurement, trials): the largest batch found
    with prober (one model and optimizer for every trial), then timed on that
    same model; one step down by resolution() should the timed run not fit
    after all (foak's SearchAndTime does the same)."""

    def logged(batch):
        ok = prober(batch)
        log(f"  max-batch search, seq {seq}: batch {batch} "
            f"{'fits' if ok else 'does not fit (out of memory)'}")
        return ok

    best, trials = search_max_batch(logged, start, limit)
    if best == 0:
        return 0, "out_of_memory", f"not even one row of {seq} tokens fits", None, trials
    log(f"  max-batch search, seq {seq}: largest batch {best} (limit {limit}, "
        f"{len(trials)} trials); timing it")
    status, error, m = _status_of(prober.timed, best)
    if status == "out_of_memory" and best > 1:
        best -= resolution(best)
        log(f"  max-batch row, seq {seq}: out of memory when timed; retrying batch {best}")
        status, error, m = _status_of(prober.timed, best)
    return best, status, error, m, trials


def _max_row(backend, args, seq):
    """(batch, status, error, measurement, extra) of the largest-batch row."""
    trials = []
    try:
        prober = backend.prober(seq)
    except OutOfMemory as e:
        return 0, "out_of_memory", f"building the model for the search: {e}", None, {}
    except Exception as e:  # noqa: BLE001
        if not isinstance(e, BuildError):
            traceback.print_exc(file=sys.stderr)
        return 0, "error", f"{type(e).__name__}: {e}", None, {}
    try:
        best, status, error, m, trials = _search_and_time(prober, seq, max(args.batch),
                                                          args.max_batch_limit)
    except Exception as e:  # noqa: BLE001 - an error other than OOM in a trial
        traceback.print_exc(file=sys.stderr)
        best, status, error, m = 0, "error", f"max-batch search: {type(e).__name__}: {e}", None
    finally:
        prober.close()
    return best, status, error, m, {"max_batch_search": [[b, ok] for b, ok in trials]}


def run_plan(args, backend, emit):
    """Runs every row of the invocation and hands each finished row to emit."""
    items = plan_rows(args.batch, args.seq, args.find_max_batch)
    info = backend.info()
    rows = []
    for index, (kind, seq, batch) in enumerate(items):
        extra = dict(info)
        if kind == "fixed":
            status, error, m = _status_of(backend.measure, batch, seq)
        else:
            batch, status, error, m, more = _max_row(backend, args, seq)
            extra.update(more)
        backend.release()
        row = make_row(index=index, total=len(items), model=args.model_name, method=args.method,
                       batch=batch, seq=seq, warmup_steps=args.warmup, steps=args.steps,
                       activation_checkpointing=args.gradient_checkpointing, status=status,
                       error=error, measurement=m, max_batch=kind == "max", extra=extra)
        emit(row)
        rows.append(row)
    return rows


class RowSink:
    """Appends whole JSON lines to a file (flushed and synced per row) or stdout,
    and a human-readable line per row to stderr."""

    def __init__(self, path):
        self.path = path
        self.file = None
        if path:
            try:
                last = b"\n"
                if os.path.isfile(path) and os.path.getsize(path) > 0:
                    with open(path, "rb") as f:
                        f.seek(-1, os.SEEK_END)
                        last = f.read(1)
                self.file = open(path, "a", encoding="utf-8")
                if last != b"\n":  # a half line from a killed run: start a new one
                    self.file.write("\n")
            except OSError as e:
                raise SetupError(f"--out {path}: cannot open it for appending: {e}")

    def emit(self, row):
        line = json.dumps(row, allow_nan=False) + "\n"
        if self.file is None:
            sys.stdout.write(line)
            sys.stdout.flush()
        else:
            self.file.write(line)
            self.file.flush()
            os.fsync(self.file.fileno())
        log(describe_row(row))

    def close(self):
        if self.file is not None:
            self.file.close()


# ---------------------------------------------------------------- torch side


class _Stage:
    """`with _Stage("what"):` turns a failure into BuildError("what: ...");
    out-of-memory errors pass through unchanged."""

    def __init__(self, backend, what):
        self.backend, self.what = backend, what

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or not isinstance(exc, Exception) or self.backend.is_oom(exc):
            return False
        raise BuildError(f"{self.what}: {type(exc).__name__}: {exc}") from exc


class _Prober:
    """fits(batch) for the max-batch search: SEARCH_STEPS training steps on one
    model and optimizer kept across trials."""

    def __init__(self, backend, seq):
        self.backend, self.seq = backend, seq
        self.model, self.optimizer, self.params = backend.build()

    def __call__(self, batch):
        b = self.backend
        oom = False
        try:
            ids = b.random_ids(batch, self.seq)
            for _ in range(SEARCH_STEPS):
                b.train_step(self.model, self.optimizer, self.params, ids)
            b.torch.cuda.synchronize()
        except Exception as e:  # noqa: BLE001 - only OOM is a "does not fit"
            if not b.is_oom(e):
                raise
            oom = True
        ids = None
        if oom:
            self.optimizer.zero_grad(set_to_none=True)
        b.release()
        return not oom

    def timed(self, batch):
        """The timed row at `batch` on the search's model (peak reset first)."""
        b = self.backend
        try:
            return b.guarded(b.time_steps, self.model, self.optimizer, self.params, batch,
                             self.seq)
        except OutOfMemory:
            self.optimizer.zero_grad(set_to_none=True)
            b.release()
            raise

    def close(self):
        self.model = self.optimizer = self.params = None
        self.backend.release()


class TorchBackend:
    """Builds, trains and times the transformers model on cuda:0."""

    def __init__(self, args, config_dict):
        self.args = args
        self.config_dict = config_dict
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
            os.environ.setdefault(var, "1")  # the GPU host has no network; never try it
        try:
            import torch
        except ImportError as e:
            raise SetupError(f"cannot import torch ({e}); run this on the GPU host, whose python3 "
                             "has torch, transformers and peft")
        try:
            import transformers
        except ImportError as e:
            raise SetupError(f"cannot import transformers ({e})")
        self.peft = None
        if args.method == "lora":
            try:
                import peft
            except ImportError as e:
                raise SetupError(f"--method lora needs peft: cannot import it ({e})")
            self.peft = peft
        try:
            usable = torch.cuda.is_available()
            if usable:
                torch.cuda.set_device(torch.device(DEVICE))
        except RuntimeError as e:
            raise SetupError(f"CUDA does not initialise: {e}")
        if not usable:
            raise SetupError("torch sees no CUDA device; this benchmark runs on cuda:0 only")
        self.torch, self.transformers = torch, transformers
        self.device = torch.device(DEVICE)
        self.oom_types = tuple({getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),
                                torch.cuda.OutOfMemoryError})

    def info(self):
        out = {"torch_version": self.torch.__version__,
               "transformers_version": self.transformers.__version__,
               "gpu_name": self.torch.cuda.get_device_name(self.device),
               "attn_implementation": "sdpa", "optimizer": "torch.optim.AdamW(fused=True)"}
        if self.peft is not None:
            a = self.args
            out.update(peft_version=self.peft.__version__, lora_r=a.lora_r,
                       lora_alpha=a.lora_alpha, lora_dropout=a.lora_dropout,
                       lora_target_modules=lora_target_modules(a.lora_target_modules))
        return out

    def is_oom(self, exc):
        if isinstance(exc, self.oom_types):
            return True
        text = str(exc)
        return isinstance(exc, RuntimeError) and (
            "out of memory" in text or "CUBLAS_STATUS_ALLOC_FAILED" in text)

    def release(self):
        gc.collect()
        self.torch.cuda.empty_cache()

    # -- building

    def _config(self):
        """The config class of the folder's model_type, filled from config.json
        the way AutoConfig.from_pretrained does it, without any hub lookup."""
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING
        model_type = self.config_dict["model_type"]
        if model_type not in CONFIG_MAPPING:
            raise ValueError(f"transformers {self.transformers.__version__} does not know "
                             f"model_type {model_type!r}")
        config = CONFIG_MAPPING[model_type].from_dict(dict(self.config_dict))
        config.use_cache = False
        return config

    def _instantiate(self, config):
        torch, auto = self.torch, self.transformers.AutoModelForCausalLM
        with torch.device(self.device):
            try:  # transformers >= 4.56 (and 5.x) name it dtype
                return auto.from_config(config, dtype=torch.bfloat16, attn_implementation="sdpa")
            except TypeError as e:
                if "dtype" not in str(e):
                    raise
            return auto.from_config(config, torch_dtype=torch.bfloat16, attn_implementation="sdpa")

    def _check_params(self, model, what):
        """Every parameter on cuda:0 in bf16 (pure bf16) and finite; moves or
        casts stragglers with a note, refuses non-finite weights."""
        torch = self.torch
        moved = 0
        for p in model.parameters():
            if p.device != self.device or p.dtype != torch.bfloat16:
                if p.device.type == "meta":
                    raise RuntimeError("a parameter is on the meta device (not materialised)")
                p.data = p.data.to(self.device, torch.bfloat16)
                moved += 1
        if moved:
            log(f"  note: {moved} {what} parameters were moved to {DEVICE} / cast to bf16")
        bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise RuntimeError(f"non-finite initial weights in {bad[:3]}")

    def build(self):
        """A fresh (model, optimizer, trainable params) on cuda:0."""
        torch, args = self.torch, self.args
        self.release()
        torch.manual_seed(args.seed)
        with _Stage(self, f"building the transformers config from {args.model}/config.json"):
            config = self._config()
        with _Stage(self, "instantiating AutoModelForCausalLM.from_config on cuda:0 (bf16, sdpa)"):
            model = self._instantiate(config)
        with _Stage(self, "checking the model's parameters"):
            self._check_params(model, "model")
        if args.gradient_checkpointing:
            with _Stage(self, "enabling gradient checkpointing"):
                model.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs={"use_reentrant": False})
        if args.method == "lora":
            with _Stage(self, "adding LoRA adapters with peft"):
                model = self._add_lora(model)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise BuildError("no trainable parameters")
        with _Stage(self, "building torch.optim.AdamW(fused=True)"):
            optimizer = torch.optim.AdamW(params, lr=LR, betas=BETAS, eps=EPS,
                                          weight_decay=WEIGHT_DECAY, fused=True)
        return model, optimizer, params

    def _add_lora(self, model):
        args, peft = self.args, self.peft
        config = peft.LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha,
                                 lora_dropout=args.lora_dropout,
                                 target_modules=lora_target_modules(args.lora_target_modules),
                                 task_type="CAUSAL_LM")
        model = peft.get_peft_model(model, config, autocast_adapter_dtype=False)
        self._check_params(model, "LoRA")
        return model

    # -- training

    def random_ids(self, batch, seq):
        gen = self.torch.Generator(device=self.device)
        gen.manual_seed(self.args.seed)
        return self.torch.randint(0, self.config_dict["vocab_size"], (batch, seq),
                                  device=self.device, generator=gen, dtype=self.torch.long)

    def train_step(self, model, optimizer, params, ids):
        """One optimizer step; returns the loss as a detached device scalar."""
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def _fresh_timed(self, batch, seq):
        self.release()
        before = self.torch.cuda.memory_allocated(self.device)
        if before > 64 * 2 ** 20:  # would inflate this row's peak
            log(f"  note: {before / 2 ** 20:.0f} MiB still allocated from earlier rows")
        model, optimizer, params = self.build()
        m = self.time_steps(model, optimizer, params, batch, seq)
        m["allocated_before_build_bytes"] = before
        return m

    def time_steps(self, model, optimizer, params, batch, seq):
        """warmup + steps optimizer steps, the last `steps` timed; the peak
        memory counts from here (weights, and optimizer state when the model
        has stepped before, are in it)."""
        torch, args = self.torch, self.args
        ids = self.random_ids(batch, seq)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(self.device)
        first = loss = start = None
        for i in range(args.warmup + args.steps):
            if i == args.warmup:  # the clock starts after the warm-up, on an idle device
                torch.cuda.synchronize()
                start = time.perf_counter()
            loss = self.train_step(model, optimizer, params, ids)
            first = loss if first is None else first
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        return {
            "seconds": seconds, "loss_first": first.item(), "loss_last": loss.item(),
            "peak_allocated_bytes": torch.cuda.max_memory_allocated(self.device),
            "peak_reserved_bytes": torch.cuda.max_memory_reserved(self.device),
            "trainable_params": sum(p.numel() for p in params),
            "total_params": sum(p.numel() for p in model.parameters()),
        }

    def guarded(self, fn, *argv):
        """fn(*argv) with the device's out-of-memory error turned into
        OutOfMemory, raised once the failed frames (and their tensors) are
        gone and the cache is emptied."""
        oom = None
        try:
            return fn(*argv)
        except Exception as e:  # noqa: BLE001
            if not self.is_oom(e):
                raise
            oom = (str(e).strip().splitlines() or ["CUDA out of memory"])[0]
        finally:
            self.release()
        raise OutOfMemory(oom)

    def measure(self, batch, seq):
        """A timed row on a fresh model; OutOfMemory when it does not fit."""
        return self.guarded(self._fresh_timed, batch, seq)

    def prober(self, seq):
        """fits(batch) and timed(batch) on one fresh model, for the search."""
        return self.guarded(_Prober, self, seq)


# ---------------------------------------------------------------- main


def main(argv=None):
    args = parse_args(argv)
    sink = None
    try:
        config = read_model_config(args.model)
        backend = TorchBackend(args, config)
        sink = RowSink(args.out)
        log(f"hf_peer: {args.model_name} {args.method}, pure bf16, batches {args.batch}, "
            f"seqs {args.seq}, {args.warmup} warm-up + {args.steps} timed steps"
            f"{', gradient checkpointing' if args.gradient_checkpointing else ''}"
            f"{', max-batch search' if args.find_max_batch else ''} on "
            f"{backend.info()['gpu_name']} (torch {backend.torch.__version__}, transformers "
            f"{backend.transformers.__version__})")
        rows = run_plan(args, backend, sink.emit)
    except SetupError as e:
        log(f"hf_peer: {e}")
        return 2
    finally:
        if sink is not None:
            sink.close()
    return 1 if any(r["status"] == "error" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
