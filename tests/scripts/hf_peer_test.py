#!/usr/bin/env python3
"""Tests the parts of bench/hf_peer.py that need no GPU: its command line, its
setup errors, the max-batch search, the rows it writes (foak's field names
and order, tokens/s and ms/step arithmetic) and the row loop, driven by a
fake backend that "runs out of memory" above a token budget. The torch side
itself only runs on the GPU host. Plain unittest, standard library only."""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "bench", "hf_peer.py")
MODEL = os.path.join(REPO, "bench", "models", "llama-3.2-1b")
HAVE_TORCH = importlib.util.find_spec("torch") is not None

FOAK_FIELDS = [  # worker/train/bench_result.cc, BenchResultToJson
    "index", "total", "framework", "model", "method", "kernels", "gpus", "batch", "seq",
    "precision", "activation_checkpointing", "status", "error", "tokens_per_second",
    "pct_change", "ms_per_step", "peak_allocated_bytes", "peak_reserved_bytes", "loss_first",
    "loss_last", "warmup_steps", "steps", "max_batch", "device",
]


def load_module():
    torch_loaded = "torch" in sys.modules
    spec = importlib.util.spec_from_file_location("hf_peer", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert torch_loaded or "torch" not in sys.modules, "hf_peer imported torch at import time"
    return module


hf = load_module()
hf.log = lambda msg: None  # the search and row lines would clutter the test output


class FakeBackend:
    """Fits a batch when batch * seq <= budget tokens; `timed_budget` (default
    the same) applies to timed rows, to mimic a search that was a little
    optimistic."""

    def __init__(self, budget, timed_budget=None):
        self.budget = budget
        self.timed_budget = budget if timed_budget is None else timed_budget
        self.measured, self.probes, self.closed, self.released = [], [], 0, 0

    def info(self):
        return {"gpu_name": "Fake GPU", "torch_version": "0"}

    def release(self):
        self.released += 1

    def measure(self, batch, seq):
        self.measured.append((batch, seq))
        if batch * seq > self.timed_budget:
            raise hf.OutOfMemory("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {"seconds": 0.5, "loss_first": 11.9, "loss_last": 11.8,
                "peak_allocated_bytes": batch * seq * 1000, "peak_reserved_bytes": 2 ** 30,
                "trainable_params": 123}

    def prober(self, seq):
        backend = self

        class Prober:
            def __call__(self, batch):
                backend.probes.append((batch, seq))
                return batch * seq <= backend.budget

            def timed(self, batch):
                return backend.measure(batch, seq)

            def close(self):
                backend.closed += 1

        return Prober()


def args_for(*extra):
    return hf.parse_args(["--model", MODEL, "--method", "full", *extra])


class SearchTest(unittest.TestCase):
    def test_finds_close_below_the_true_max(self):
        best, trials = hf.search_max_batch(lambda b: b <= 37, 4, 1024)
        self.assertGreater(best, 37 * 7 / 8)
        self.assertLessEqual(best, 37)
        self.assertLessEqual(len(trials), 10)
        self.assertEqual(trials[:4], [(4, True), (8, True), (16, True), (32, True)])

    def test_limit_below_true_max(self):
        best, trials = hf.search_max_batch(lambda b: b <= 37, 4, 20)
        self.assertEqual(best, 20)
        self.assertTrue(all(b <= 20 for b, _ in trials))

    def test_start_above_limit_is_clamped(self):
        self.assertEqual(hf.search_max_batch(lambda b: True, 64, 20)[0], 20)

    def test_start_does_not_fit_searches_down(self):
        best, trials = hf.search_max_batch(lambda b: b <= 37, 64, 1024)
        self.assertEqual(trials[0], (64, False))
        self.assertGreater(best, 37 * 7 / 8)
        self.assertLessEqual(best, 37)
        best, _ = hf.search_max_batch(lambda b: b <= 1, 16, 1024)
        self.assertEqual(best, 1)

    def test_nothing_fits(self):
        best, trials = hf.search_max_batch(lambda b: False, 4, 1024)
        self.assertEqual(best, 0)
        self.assertEqual([b for b, _ in trials], [4, 2, 1])

    def test_every_true_max(self):
        for true_max in range(1, 300):
            for start in (1, 3, 4, 16, 500):
                for limit in (50, 1024):
                    best, trials = hf.search_max_batch(lambda b: b <= true_max, start, limit)
                    want = min(true_max, limit)
                    self.assertLessEqual(best, want)
                    self.assertGreaterEqual(best, want - hf.resolution(want),
                                            (true_max, start, limit, trials))
                    self.assertTrue(all(1 <= b <= limit for b, _ in trials))
                    self.assertEqual(len(trials), len(set(b for b, _ in trials)), trials)


class RowTest(unittest.TestCase):
    def make(self, **kw):
        base = dict(index=2, total=5, model="llama-3.2-1b", method="lora", batch=4, seq=2048,
                    warmup_steps=3, steps=10, activation_checkpointing=False, status="ok")
        base.update(kw)
        return hf.make_row(**base)

    def test_fields_and_arithmetic(self):
        row = self.make(measurement={"seconds": 2.0, "loss_first": 11.93, "loss_last": 11.9,
                                     "peak_allocated_bytes": 5 * 2 ** 30,
                                     "peak_reserved_bytes": 6 * 2 ** 30, "trainable_params": 7},
                        extra={"gpu_name": "NVIDIA H200"})
        self.assertEqual(list(row)[:len(FOAK_FIELDS)], FOAK_FIELDS)
        self.assertEqual(row["framework"], "transformers")
        self.assertEqual(row["kernels"], "none")
        self.assertEqual((row["gpus"], row["precision"], row["device"]), (1, "bf16", "cuda:0"))
        self.assertIsNone(row["pct_change"])
        self.assertAlmostEqual(row["tokens_per_second"], 4 * 2048 * 10 / 2.0)
        self.assertAlmostEqual(row["ms_per_step"], 200.0)
        self.assertEqual(row["peak_allocated_bytes"], 5 * 2 ** 30)
        self.assertEqual((row["trainable_params"], row["gpu_name"]), (7, "NVIDIA H200"))
        json.dumps(row, allow_nan=False)

    def test_out_of_memory_row(self):
        row = self.make(status="out_of_memory", error="CUDA out of memory", max_batch=True)
        self.assertEqual((row["tokens_per_second"], row["ms_per_step"]), (0.0, 0.0))
        self.assertEqual((row["loss_first"], row["loss_last"]), (0.0, 0.0))
        self.assertTrue(row["max_batch"])
        self.assertIn("out_of_memory: CUDA out of memory", hf.describe_row(row))

    def test_non_finite_loss_is_an_error(self):
        row = self.make(measurement={"seconds": 1.0, "loss_first": float("nan"),
                                     "loss_last": 11.0})
        self.assertEqual(row["status"], "error")
        self.assertIn("non-finite", row["error"])
        json.dumps(row, allow_nan=False)  # null, not NaN

    def test_describe_ok_row(self):
        row = self.make(measurement={"seconds": 2.0, "loss_first": 11.93, "loss_last": 11.9,
                                     "peak_allocated_bytes": 5 * 2 ** 30,
                                     "peak_reserved_bytes": 6 * 2 ** 30})
        self.assertEqual(hf.describe_row(row),
                         "[3/5] transformers llama-3.2-1b lora batch 4 seq 2048: 40,960 tokens/s, "
                         "200.0 ms/step, peak 5.00 GiB allocated (6.00 reserved), "
                         "loss 11.9300 -> 11.9000")


class PlanTest(unittest.TestCase):
    def test_plan_order(self):
        self.assertEqual(hf.plan_rows([4, 16], [512, 2048], True), [
            ("fixed", 512, 4), ("fixed", 512, 16), ("fixed", 2048, 4), ("fixed", 2048, 16),
            ("max", 512, None), ("max", 2048, None)])
        self.assertEqual(len(hf.plan_rows([4], [512, 2048], False)), 2)

    def test_rows_with_max_batch(self):
        backend = FakeBackend(budget=37 * 2048)
        args = args_for("--batch", "4,64", "--seq", "2048", "--find-max-batch")
        emitted = []
        rows = hf.run_plan(args, backend, emitted.append)
        self.assertEqual(rows, emitted)
        self.assertEqual([r["index"] for r in rows], [0, 1, 2])
        self.assertEqual({r["total"] for r in rows}, {3})
        self.assertEqual([r["status"] for r in rows], ["ok", "out_of_memory", "ok"])
        self.assertEqual([r["max_batch"] for r in rows], [False, False, True])
        largest = rows[2]
        self.assertGreater(largest["batch"], 37 * 7 / 8)
        self.assertLessEqual(largest["batch"], 37)
        # The search starts at the largest --batch.
        self.assertEqual(largest["max_batch_search"][0], [64, False])
        self.assertEqual(backend.closed, 1)
        self.assertEqual(largest["gpu_name"], "Fake GPU")
        self.assertEqual(rows[0]["model"], "llama-3.2-1b")
        self.assertGreater(backend.released, 0)

    def test_timed_max_batch_steps_down_once(self):
        backend = FakeBackend(budget=32 * 512, timed_budget=29 * 512)
        args = args_for("--batch", "4", "--seq", "512", "--find-max-batch")
        rows = hf.run_plan(args, backend, lambda r: None)
        self.assertEqual(rows[1]["status"], "ok")
        self.assertEqual(rows[1]["batch"], 32 - 4)
        self.assertEqual(backend.measured[-2:], [(32, 512), (28, 512)])

    def test_timed_max_batch_fails_twice(self):
        backend = FakeBackend(budget=32 * 512, timed_budget=20 * 512)
        rows = hf.run_plan(args_for("--batch", "4", "--seq", "512", "--find-max-batch"),
                           backend, lambda r: None)
        self.assertEqual((rows[1]["status"], rows[1]["batch"]), ("out_of_memory", 28))
        self.assertEqual(backend.closed, 1)

    def test_nothing_fits(self):
        backend = FakeBackend(budget=0)
        rows = hf.run_plan(args_for("--batch", "2", "--seq", "512", "--find-max-batch"), backend,
                           lambda r: None)
        self.assertEqual([r["status"] for r in rows], ["out_of_memory", "out_of_memory"])
        self.assertEqual(rows[1]["batch"], 0)
        self.assertIn("not even one row of 512 tokens fits", rows[1]["error"])

    def test_errors_do_not_stop_the_run(self):
        class Broken(FakeBackend):
            def measure(self, batch, seq):
                if batch == 4:
                    raise hf.BuildError("instantiating the model: ValueError: bad config")
                return super().measure(batch, seq)

        rows = hf.run_plan(args_for("--batch", "4,8", "--seq", "128"), Broken(budget=10 ** 6),
                           lambda r: None)
        self.assertEqual([r["status"] for r in rows], ["error", "ok"])
        self.assertIn("bad config", rows[0]["error"])


    def test_search_errors_become_error_rows(self):
        class NoProber(FakeBackend):
            def prober(self, seq):
                raise hf.BuildError("adding LoRA adapters with peft: ValueError: no such module")

        class BrokenTrial(FakeBackend):
            def prober(self, seq):
                prober = super().prober(seq)

                def explode(batch):
                    raise RuntimeError("CUDA error: an illegal memory access was encountered")

                prober.__class__.__call__ = lambda self, batch: explode(batch)
                return prober

        args = args_for("--batch", "4", "--seq", "128", "--find-max-batch")
        rows = hf.run_plan(args, NoProber(budget=10 ** 6), lambda r: None)
        self.assertEqual([r["status"] for r in rows], ["ok", "error"])
        self.assertIn("no such module", rows[1]["error"])
        backend = BrokenTrial(budget=10 ** 6)
        with open(os.devnull, "w") as quiet:
            stderr, sys.stderr = sys.stderr, quiet  # the traceback it prints
            try:
                rows = hf.run_plan(args, backend, lambda r: None)
            finally:
                sys.stderr = stderr
        self.assertEqual(rows[1]["status"], "error")
        self.assertIn("illegal memory access", rows[1]["error"])
        self.assertEqual(backend.closed, 1)


class SinkTest(unittest.TestCase):
    def test_appends_whole_lines_after_a_cut_one(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "peer.jsonl")
            with open(path, "w") as f:
                f.write('{"index": 0}\n{"ind')
            sink = hf.RowSink(path)
            row = hf.make_row(index=0, total=1, model="m", method="full", batch=1, seq=8,
                              warmup_steps=0, steps=1, activation_checkpointing=False,
                              status="out_of_memory", error="oom")
            sink.emit(row)
            sink.close()
            with open(path) as f:
                lines = f.read().split("\n")
            self.assertEqual(lines[-1], "")
            self.assertEqual(json.loads(lines[-2])["framework"], "transformers")
            self.assertEqual(lines[1], '{"ind')


class CommandLineTest(unittest.TestCase):
    def run_script(self, *argv):
        return subprocess.run([sys.executable, SCRIPT, *argv], capture_output=True, text=True,
                              timeout=120)

    def test_help(self):
        proc = self.run_script("--help")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("--find-max-batch", proc.stdout)

    def test_parse(self):
        args = hf.parse_args(["--model", MODEL + "/", "--method", "lora", "--batch", "4,16",
                              "--seq", "512,2048", "--lora-target-modules", "q_proj, v_proj"])
        self.assertEqual((args.batch, args.seq, args.model_name), ([4, 16], [512, 2048],
                                                                   "llama-3.2-1b"))
        self.assertEqual((args.steps, args.warmup, args.lora_r, args.lora_alpha), (10, 3, 16, 16))
        self.assertEqual(hf.lora_target_modules(args.lora_target_modules), ["q_proj", "v_proj"])
        self.assertEqual(hf.lora_target_modules("all-linear"), "all-linear")

    def test_bad_arguments(self):
        for argv in (["--batch", "0"], ["--seq", "1"], ["--batch", "x"], ["--steps", "0"],
                     ["--precision", "fp32"]):
            proc = self.run_script("--model", MODEL, "--method", "full", *argv)
            self.assertEqual(proc.returncode, 2, argv)

    def test_missing_config(self):
        with tempfile.TemporaryDirectory() as tmp:
            proc = self.run_script("--model", tmp, "--method", "full")
            self.assertEqual(proc.returncode, 2)
            self.assertIn("no config.json", proc.stderr)
            proc = self.run_script("--model", os.path.join(tmp, "nope"), "--method", "full")
            self.assertIn("no such folder", proc.stderr)

    def test_model_config_checks(self):
        self.assertEqual(hf.read_model_config(MODEL)["vocab_size"], 128256)
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "config.json"), "w") as f:
                json.dump({"model_type": "llama"}, f)
            with self.assertRaisesRegex(hf.SetupError, "vocab_size"):
                hf.read_model_config(tmp)

    @unittest.skipIf(HAVE_TORCH, "torch is installed here: the script would really run")
    def test_without_torch_says_so(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "rows.jsonl")
            proc = self.run_script("--model", MODEL, "--method", "full", "--batch", "1",
                                   "--seq", "8", "--out", out)
            self.assertEqual(proc.returncode, 2)
            self.assertIn("cannot import torch", proc.stderr)
            self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
    unittest.main(verbosity=2)
