#!/usr/bin/env python3
"""Tests bench/bench_table.py on small synthetic rows in foak's bench.jsonl
format (worker/train/bench_result.h) and hf_peer.py's: the exact table
header, % change against the transformers row of the same shape (and the foak
"none" fallback), rows that did not run, the largest-batch table, the
--targets lines, --json, and --plot when matplotlib is importable (skipped
otherwise). Plain unittest, standard library only."""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "bench", "bench_table.py")
GIB = 2 ** 30
HEADER = "| model | method | kernels | GPUs | batch | seq | tokens/s | % change | peak GiB |"
MAX_HEADER = "| model | method | kernels | seq | largest batch | tokens/s | peak GiB |"


def load_module():
    spec = importlib.util.spec_from_file_location("bench_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(framework="foak", kernels="none", batch=4, seq=2048, tps=50000.0, peak_gib=20.0,
        status="ok", max_batch=False, model="llama-3.2-1b", method="full", **extra):
    r = {"index": 0, "total": 1, "framework": framework, "model": model, "method": method,
         "kernels": kernels, "gpus": 1, "batch": batch, "seq": seq, "precision": "bf16",
         "activation_checkpointing": False, "status": status,
         "error": "" if status == "ok" else "CUDA out of memory",
         "tokens_per_second": tps if status == "ok" else 0.0, "pct_change": None,
         "ms_per_step": 100.0, "peak_allocated_bytes": int(peak_gib * GIB),
         "peak_reserved_bytes": int(peak_gib * GIB) + GIB, "loss_first": 11.9,
         "loss_last": 11.8, "warmup_steps": 3, "steps": 10, "max_batch": max_batch,
         "device": "cuda:0"}
    r.update(extra)
    return r


def write_jsonl(path, rows, tail=""):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        f.write(tail)


def table_rows(text, header):
    """The data lines of the markdown table under `header`, split into cells."""
    lines = text.splitlines()
    start = lines.index(header) + 2
    out = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        out.append([cell.strip() for cell in line.strip("|").split("|")])
    return out


FOAK_ROWS = [
    row(kernels="none", tps=50000, peak_gib=30),
    row(kernels="foak", tps=56000, peak_gib=26),
    row(kernels="all", tps=60000, peak_gib=20),
    row(kernels="all", batch=16, tps=80000, peak_gib=60),
    row(kernels="none", batch=16, status="out_of_memory"),
    row(kernels="all", seq=512, tps=90000, peak_gib=10),
    row(kernels="none", seq=512, tps=75000, peak_gib=12),
    row(kernels="all", batch=48, max_batch=True, tps=99000, peak_gib=130),
    row(kernels="none", batch=24, max_batch=True, tps=70000, peak_gib=128),
]
PEER_ROWS = [
    row(framework="transformers", kernels="none", tps=50000, peak_gib=25, gpu_name="NVIDIA H200"),
    row(framework="transformers", kernels="none", batch=16, tps=70000, peak_gib=90,
        gpu_name="NVIDIA H200"),
    row(framework="transformers", kernels="none", batch=36, max_batch=True, tps=72000,
        peak_gib=131, gpu_name="NVIDIA H200"),
]


class BenchTableTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.foak = os.path.join(self.tmp.name, "bench.jsonl")
        self.peer = os.path.join(self.tmp.name, "hf_peer.jsonl")
        # foak's file ends in a half line, as a killed run may leave it.
        write_jsonl(self.foak, FOAK_ROWS, tail='{"index": 9, "fram')
        write_jsonl(self.peer, PEER_ROWS)

    def tearDown(self):
        self.tmp.cleanup()

    def run_script(self, *argv, check=True):
        proc = subprocess.run([sys.executable, SCRIPT, *argv], capture_output=True, text=True,
                              timeout=120)
        if check:
            self.assertEqual(proc.returncode, 0, proc.stderr)
        return proc

    def table(self, *flags):
        return self.run_script(self.foak, self.peer, *flags).stdout

    def find(self, cells, kernels, batch="4", seq="2048"):
        hits = [c for c in cells if c[2] == kernels and c[4] == batch and c[5] == seq]
        self.assertEqual(len(hits), 1, f"{kernels} batch {batch} seq {seq} in {cells}")
        return hits[0]

    def test_header_is_exact(self):
        text = self.table()
        self.assertIn(HEADER + "\n|---|---|---|---:|---:|---:|---:|---:|---:|\n", text)

    def test_pct_change_against_transformers(self):
        cells = table_rows(self.table(), HEADER)
        tf = self.find(cells, "transformers")
        self.assertEqual(tf, ["llama-3.2-1b", "full", "transformers", "1", "4", "2048", "50,000",
                              "baseline", "25.00"])
        self.assertEqual(self.find(cells, "foak: all")[6:], ["60,000", "+20.0%", "20.00"])
        self.assertEqual(self.find(cells, "foak: foak")[6:], ["56,000", "+12.0%", "26.00"])
        self.assertEqual(self.find(cells, "foak: none")[7], "+0.0%")
        self.assertEqual(self.find(cells, "foak: all", batch="16")[7], "+14.3%")

    def test_group_order(self):
        cells = table_rows(self.table(), HEADER)
        shapes = [(c[5], c[4]) for c in cells]
        # seq 512 before 2048; batch 4 before 16; the largest-batch rows last.
        self.assertEqual(shapes[:2], [("512", "4"), ("512", "4")])
        self.assertEqual([c[2] for c in cells if (c[5], c[4]) == ("2048", "4")],
                         ["transformers", "foak: none", "foak: foak", "foak: all"])
        self.assertTrue(all("(max)" in c[4] for c in cells[-3:]), cells[-3:])
        self.assertFalse(any("(max)" in c[4] for c in cells[:-3]))

    def test_fallback_to_foak_none(self):
        text = self.table()
        cells = table_rows(text, HEADER)
        none = self.find(cells, "foak: none", seq="512")
        self.assertEqual(none[7], "baseline")
        self.assertEqual(self.find(cells, "foak: all", seq="512")[7], "+20.0%†")
        self.assertIn("† no transformers row for that shape", text)
        self.assertIn("% change: tokens/s against the transformers row", text)

    def test_out_of_memory_rows(self):
        cells = table_rows(self.table(), HEADER)
        self.assertEqual(self.find(cells, "foak: none", batch="16")[6:],
                         ["out_of_memory", "—", "—"])

    def test_max_batch_table(self):
        text = self.table()
        self.assertIn(MAX_HEADER, text)
        cells = table_rows(text, MAX_HEADER)
        self.assertEqual(cells, [
            ["llama-3.2-1b", "full", "transformers", "2048", "36", "72,000", "131.00"],
            ["llama-3.2-1b", "full", "foak: none", "2048", "24", "70,000", "128.00"],
            ["llama-3.2-1b", "full", "foak: all", "2048", "48", "99,000", "130.00"],
        ])

    def test_no_max_table_without_max_rows(self):
        only = os.path.join(self.tmp.name, "plain.jsonl")
        write_jsonl(only, [r for r in FOAK_ROWS + PEER_ROWS if not r["max_batch"]])
        text = self.run_script(only).stdout
        self.assertNotIn(MAX_HEADER, text)
        self.assertNotIn("(max)", text)

    def test_targets(self):
        text = self.table("--targets")
        lines = [l for l in text.splitlines() if l.startswith("- ")]
        by_shape = {l.split(":")[0]: l for l in lines}
        met = by_shape["- llama-3.2-1b full, GPUs 1, seq 2048, batch 4"]
        self.assertIn("speed met (1.20x transformers", met)
        self.assertIn("memory met (20.00 GiB vs 25.00 GiB)", met)
        missed = by_shape["- llama-3.2-1b full, GPUs 1, seq 2048, batch 16"]
        # 80000 / 70000 = 1.143x against a 1.2x target: 4.8% short.
        self.assertIn("speed missed by 4.8%", missed)
        self.assertIn("memory met (60.00 GiB vs 90.00 GiB)", missed)
        self.assertIn("no transformers row",
                      by_shape["- llama-3.2-1b full, GPUs 1, seq 512, batch 4"])
        self.assertIn("Targets met for 1 of 2 shapes.", text)
        self.assertNotIn("### Targets", self.table())

    def test_targets_memory_missed(self):
        path = os.path.join(self.tmp.name, "mem.jsonl")
        write_jsonl(path, [row(framework="transformers", tps=100, peak_gib=10),
                           row(kernels="all", tps=150, peak_gib=11)])
        text = self.run_script(path, "--targets").stdout
        self.assertIn("speed met (1.50x transformers", text)
        self.assertIn("memory missed by 10.0% (11.00 GiB vs 10.00 GiB)", text)

    def test_markdown_and_json_files(self):
        md = os.path.join(self.tmp.name, "table.md")
        merged = os.path.join(self.tmp.name, "rows.json")
        proc = self.run_script(self.foak, self.peer, "--markdown", md, "--json", merged)
        self.assertEqual(proc.stdout, "")
        with open(md, encoding="utf-8") as f:
            self.assertIn(HEADER, f.read())
        with open(merged, encoding="utf-8") as f:
            rows = json.load(f)
        self.assertEqual(len(rows), len(FOAK_ROWS) + len(PEER_ROWS))  # the half line is skipped
        # The merged array reads back as input.
        self.assertIn(HEADER, self.run_script(merged).stdout)

    def test_half_line_is_reported(self):
        proc = self.run_script(self.foak, self.peer)
        self.assertIn("skipped, not JSON", proc.stderr)

    def test_no_rows_and_missing_file(self):
        empty = os.path.join(self.tmp.name, "empty.jsonl")
        write_jsonl(empty, [])
        self.assertEqual(self.run_script(empty, check=False).returncode, 1)
        proc = self.run_script(os.path.join(self.tmp.name, "nope.jsonl"), check=False)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("nope.jsonl", proc.stderr)

    def test_gpu_name_and_labels(self):
        text = self.table()
        self.assertIn("Measured on NVIDIA H200.", text)
        module = load_module()
        self.assertEqual(module.method_label(row(activation_checkpointing=True)), "full +ckpt")
        self.assertEqual(module.method_label(row(precision="bf16-mixed")), "full (bf16-mixed)")

    @unittest.skipIf(importlib.util.find_spec("matplotlib") is None, "matplotlib not installed")
    def test_plot_writes_png(self):
        png = os.path.join(self.tmp.name, "bench.png")
        self.run_script(self.foak, self.peer, "--plot", png, "--title", "test figure")
        with open(png, "rb") as f:
            head = f.read(8)
        self.assertEqual(head, b"\x89PNG\r\n\x1a\n")
        self.assertGreater(os.path.getsize(png), 10000)

    @unittest.skipIf(importlib.util.find_spec("matplotlib") is not None, "matplotlib installed")
    def test_plot_without_matplotlib_says_so(self):
        proc = self.run_script(self.foak, self.peer, "--plot",
                               os.path.join(self.tmp.name, "x.png"), check=False)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("matplotlib", proc.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
