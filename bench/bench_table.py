#!/usr/bin/env python3
"""Tabulates benchmark rows of foak and of its Hugging Face peer side by side.

Why: a foak benchmark job (bench.jsonl in the job's output folder, or
`foakctl bench -o json`) times one model and method with each kernel set
("none", "foak", "all", ...), and bench/hf_peer.py times eager transformers on
the same card with the same workload (random tokens, pure bf16, fused AdamW,
the same clock and peak-memory definition). Both write rows with the fields of
worker/train/bench_result.h. This script merges any number of such files and
answers the one question the numbers are for: how much faster and how much
leaner foak is than the usual transformers fine-tune, shape by shape.

Output (markdown on stdout, or --markdown FILE):
  * one table, grouped by (model, method, GPUs, seq, batch) -- rows of a
    largest-batch search after the others, grouped without batch so that
    they compare throughput at each one's own largest batch -- with the
    transformers row first (the baseline), then foak's none, foak, all,
    others. "% change" is the
    tokens/s against the transformers row of the group; a group without one
    falls back to its foak "none" row (marked, and said under the table);
  * a table of the largest batch that fit at each seq per framework/kernel
    set (rows with max_batch true);
  * --targets: per group, whether foak "all" reaches >= 1.2x the transformers
    tokens/s with a peak no higher than transformers'.
Rows whose status is not "ok" show the status instead of numbers. peak GiB is
peak_allocated_bytes / 2^30.

  python3 bench/bench_table.py FILE.jsonl [FILE ...] [--markdown OUT.md]
      [--targets] [--speed-target 1.2] [--plot OUT.png] [--title TEXT]
      [--json OUT.json]

Standard library only, but --plot needs matplotlib.
"""
import argparse
import json
import os
import sys

GIB = 2 ** 30
HEADER = "| model | method | kernels | GPUs | batch | seq | tokens/s | % change | peak GiB |"
ALIGN = "|---|---|---|---:|---:|---:|---:|---:|---:|"
MAX_HEADER = "| model | method | kernels | seq | largest batch | tokens/s | peak GiB |"
MAX_ALIGN = "|---|---|---|---:|---:|---:|---:|"
REQUIRED = ("model", "method", "kernels", "batch", "seq", "status")
FOAK_ORDER = ("none", "foak", "all")
FALLBACK_MARK = "†"
DASH = "—"


class InputError(Exception):
    pass


# ---------------------------------------------------------------- reading


def _parse_file(path):
    """The objects of one file: JSON Lines, or one JSON array (as --json writes)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise InputError(f"{path}: {e}")
    if text.lstrip().startswith("["):
        try:
            return [(1, obj) for obj in json.loads(text)]
        except ValueError as e:
            raise InputError(f"{path}: not a JSON array: {e}")
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((number, json.loads(line)))
        except ValueError:
            print(f"bench_table: {path}:{number}: skipped, not JSON (a cut line?)", file=sys.stderr)
    return out


def load_rows(paths):
    rows = []
    for path in paths:
        for number, obj in _parse_file(path):
            missing = [k for k in REQUIRED if not isinstance(obj, dict) or k not in obj]
            if missing:
                print(f"bench_table: {path}:{number}: skipped, no {', '.join(missing)}",
                      file=sys.stderr)
                continue
            rows.append(obj)
    return rows


# ---------------------------------------------------------------- labels and order


def framework(row):
    return row.get("framework") or "foak"


def is_transformers(row):
    return framework(row) == "transformers"


def is_foak(row, kernels):
    return framework(row) == "foak" and row.get("kernels") == kernels


def kernels_label(row):
    return "transformers" if is_transformers(row) else f"{framework(row)}: {row['kernels']}"


def method_label(row):
    label = str(row["method"])
    if row.get("activation_checkpointing"):
        label += " +ckpt"
    precision = row.get("precision") or "bf16"
    if precision != "bf16":
        label += f" ({precision})"
    return label


def kernel_rank(row):
    if is_transformers(row):
        return (0, "")
    if framework(row) == "foak":
        kernels = row.get("kernels")
        if kernels in FOAK_ORDER:
            return (1 + FOAK_ORDER.index(kernels), "")
        return (1 + len(FOAK_ORDER), str(kernels))
    return (2 + len(FOAK_ORDER), kernels_label(row))


def group_key(row):
    """(max_batch, model, method, GPUs, seq, batch). Largest-batch rows differ
    in batch by construction, so they group without it (batch 0 in the key):
    their % change compares throughput at each one's own largest batch."""
    max_batch = bool(row.get("max_batch"))
    return (max_batch, str(row["model"]), method_label(row), int(row.get("gpus") or 1),
            int(row["seq"]), 0 if max_batch else int(row["batch"]))


def group_rows(rows):
    """[(key, rows)] sorted by group_key (max_batch groups last), each group's
    rows in kernel order (transformers, foak none, foak, all, others)."""
    groups = {}
    for row in rows:
        groups.setdefault(group_key(row), []).append(row)
    return [(key, sorted(groups[key], key=kernel_rank)) for key in sorted(groups)]


def ok(row):
    tps = row.get("tokens_per_second")
    return row.get("status") == "ok" and isinstance(tps, (int, float)) and tps > 0


def baseline(group):
    """(row, label) the group's % change is taken against, or (None, None)."""
    for pick, label in ((is_transformers, "transformers"),
                        (lambda r: is_foak(r, "none"), "foak: none")):
        for row in group:
            if pick(row) and ok(row):
                return row, label
    return None, None


def pct_change(row, base):
    return (row["tokens_per_second"] / base["tokens_per_second"] - 1.0) * 100.0


def peak_gib(row):
    return (row.get("peak_allocated_bytes") or 0) / GIB


# ---------------------------------------------------------------- tables


def _cells(row, base, base_label):
    """(tokens/s, % change, peak GiB) cells of one row."""
    if not ok(row):
        return str(row.get("status") or "unknown"), DASH, DASH
    if base is None:
        change = DASH
    elif row is base:
        change = "baseline"
    else:
        change = f"{pct_change(row, base):+.1f}%"
        if base_label != "transformers":
            change += FALLBACK_MARK
    return f"{row['tokens_per_second']:,.0f}", change, f"{peak_gib(row):.2f}"


def main_table(groups):
    lines = [HEADER, ALIGN]
    fallback = has_max = False
    for _, group in groups:
        base, base_label = baseline(group)
        fallback |= base is not None and base_label != "transformers"
        for row in group:
            tokens, change, peak = _cells(row, base, base_label)
            batch = str(row["batch"])
            if row.get("max_batch"):
                batch += " (max)"
                has_max = True
            lines.append(f"| {row['model']} | {method_label(row)} | {kernels_label(row)} | "
                         f"{row.get('gpus') or 1} | {batch} | {row['seq']} | {tokens} | "
                         f"{change} | {peak} |")
    notes = ["", "% change: tokens/s against the transformers row of the same model, method, "
                 "GPUs, seq and batch."]
    if fallback:
        notes.append(f"{FALLBACK_MARK} no transformers row for that shape: against foak's "
                     "\"none\" row (plain LibTorch) instead.")
    if has_max:
        notes.append("(max): the largest batch that fit for that framework and kernel set "
                     "(next table); its % change compares tokens/s at each one's own largest "
                     "batch.")
    return lines + notes


def max_table(rows):
    picked = sorted((r for r in rows if r.get("max_batch")),
                    key=lambda r: (str(r["model"]), method_label(r), int(r["seq"]),
                                   kernel_rank(r)))
    if not picked:
        return []
    lines = [MAX_HEADER, MAX_ALIGN]
    for row in picked:
        tokens, _, peak = _cells(row, None, None)
        largest = str(row["batch"]) if int(row["batch"]) > 0 else DASH
        lines.append(f"| {row['model']} | {method_label(row)} | {kernels_label(row)} | "
                     f"{row['seq']} | {largest} | {tokens} | {peak} |")
    return lines


# ---------------------------------------------------------------- targets


def _target_verdict(tf, fa, speed_target):
    """(met, text) for foak "all" against transformers in one group."""
    if tf is None:
        return None, "no transformers row"
    if fa is None:
        return None, "no foak \"all\" row"
    if not ok(tf) and not ok(fa):
        return False, f"neither ran (transformers {tf.get('status')}, foak all {fa.get('status')})"
    if not ok(fa):
        return False, f"missed: foak all {fa.get('status')}, transformers ran"
    if not ok(tf):
        return True, f"met: transformers {tf.get('status')}, foak all ran"
    ratio = fa["tokens_per_second"] / tf["tokens_per_second"]
    speed_ok = ratio >= speed_target
    speed = "met" if speed_ok else f"missed by {(1 - ratio / speed_target) * 100:.1f}%"
    tf_peak, fa_peak = peak_gib(tf), peak_gib(fa)
    memory_ok = fa_peak <= tf_peak
    memory = "met" if memory_ok else f"missed by {(fa_peak / tf_peak - 1) * 100:.1f}%"
    return speed_ok and memory_ok, (
        f"speed {speed} ({ratio:.2f}x transformers, target {speed_target:.2f}x); "
        f"memory {memory} ({fa_peak:.2f} GiB vs {tf_peak:.2f} GiB)")


def target_lines(groups, speed_target):
    lines = [f"foak \"all\" against transformers: tokens/s >= {speed_target:.2f}x and peak "
             "GiB <= transformers'.", ""]
    met = judged = 0
    for key, group in groups:
        if key[0]:  # largest-batch rows differ in batch across frameworks
            continue
        tf = next((r for r in group if is_transformers(r)), None)
        fa = next((r for r in group if is_foak(r, "all")), None)
        verdict, text = _target_verdict(tf, fa, speed_target)
        if verdict is not None:
            judged += 1
            met += verdict
        _, model, method, gpus, seq, batch = key
        lines.append(f"- {model} {method}, GPUs {gpus}, seq {seq}, batch {batch}: {text}")
    lines += ["", f"Targets met for {met} of {judged} shapes."]
    return lines


# ---------------------------------------------------------------- report


def gpu_names(rows):
    names = []
    for row in rows:
        name = row.get("gpu_name")
        if name and name not in names:
            names.append(name)
    return names


def render(rows, targets=False, speed_target=1.2):
    groups = group_rows(rows)
    out = ["### Tokens per second and peak memory", ""]
    gpus = gpu_names(rows)
    if gpus:
        out += [f"Measured on {', '.join(gpus)}.", ""]
    out += main_table(groups)
    largest = max_table(rows)
    if largest:
        out += ["", "### Largest batch that fits", ""] + largest
    if targets:
        out += ["", "### Targets", ""] + target_lines(groups, speed_target)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- plot


def _import_pyplot():
    try:
        import matplotlib
    except ImportError:
        raise InputError("--plot needs matplotlib, which this python3 cannot import "
                         "(Debian: apt-get install python3-matplotlib)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _panels(rows):
    """{(model, method): {slot: {kernels label: row}}}; slot = (max_batch, seq, batch)."""
    panels = {}
    for row in rows:
        slot = (bool(row.get("max_batch")), int(row["seq"]),
                None if row.get("max_batch") else int(row["batch"]))
        where = panels.setdefault((str(row["model"]), method_label(row)), {})
        where.setdefault(slot, {}).setdefault(kernels_label(row), row)
    return panels


def _slot_label(slot):
    max_batch, seq, batch = slot
    return f"seq {seq}\n{'largest batch' if max_batch else f'batch {batch}'}"


def _draw_bars(ax, slots, labels, values_of, annotate):
    width = 0.8 / max(1, len(labels))
    for i, label in enumerate(labels):
        xs, heights = [], []
        for x, (slot, by_label) in enumerate(slots):
            xs.append(x + (i - (len(labels) - 1) / 2) * width)
            heights.append(values_of(by_label.get(label)))
        bars = ax.bar(xs, heights, width, label=label)
        for bar, (slot, by_label) in zip(bars, slots):
            text = annotate(by_label.get(label), by_label)
            if text:
                ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=7, rotation=90,
                            xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(slots)))
    ax.set_xticklabels([_slot_label(slot) for slot, _ in slots], fontsize=8)
    ax.margins(y=0.25)
    ax.grid(axis="y", alpha=0.3)


def _speed_note(row, by_label):
    if row is None:
        return ""
    if not ok(row):
        return str(row.get("status"))
    base, _ = baseline(list(by_label.values()))
    notes = [f"b={row['batch']}"] if row.get("max_batch") else []
    if base is not None and base is not row:
        notes.append(f"{pct_change(row, base):+.0f}%")
    return " ".join(notes)


def _peak_note(row, _):
    return "" if row is None or ok(row) else str(row.get("status"))


def plot(rows, path, title=""):
    plt = _import_pyplot()
    panels = _panels(rows)
    labels = sorted({kernels_label(r) for r in rows},
                    key=lambda lab: kernel_rank(next(r for r in rows if kernels_label(r) == lab)))
    widest = max(len(slots) for slots in panels.values())
    fig, axes = plt.subplots(len(panels), 2, squeeze=False,
                             figsize=(max(10.0, 2 * (1.1 * widest + 2)), 3.8 * len(panels)))
    for (model, method), ax_row in zip(sorted(panels), axes):
        slots = sorted(panels[(model, method)].items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                                        kv[0][2] or 0))
        _draw_bars(ax_row[0], slots, labels,
                   lambda r: r["tokens_per_second"] if r is not None and ok(r) else 0,
                   _speed_note)
        ax_row[0].set_ylabel("tokens/s")
        ax_row[0].set_title(f"{model} {method}: tokens/s (higher is better)", fontsize=10)
        _draw_bars(ax_row[1], slots, labels,
                   lambda r: peak_gib(r) if r is not None and ok(r) else 0, _peak_note)
        ax_row[1].set_ylabel("peak GiB allocated")
        ax_row[1].set_title(f"{model} {method}: peak memory (lower is better)", fontsize=10)
    gpus = gpu_names(rows)
    fig.suptitle(title or f"foak vs Hugging Face transformers, pure bf16"
                          f"{' on ' + ', '.join(gpus) if gpus else ''}")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=9)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


# ---------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Tabulates foak and transformers benchmark rows "
                                            "(bench.jsonl, hf_peer.py output).")
    p.add_argument("files", nargs="+", help="JSON Lines files of rows (or JSON arrays)")
    p.add_argument("--markdown", default="", help="write the tables here instead of stdout")
    p.add_argument("--targets", action="store_true",
                   help="check foak all >= speed target x transformers and peak <= transformers")
    p.add_argument("--speed-target", type=float, default=1.2)
    p.add_argument("--plot", default="", help="write a PNG figure here (needs matplotlib)")
    p.add_argument("--title", default="", help="the figure's title")
    p.add_argument("--json", default="", help="write the merged rows here as one JSON array")
    return p.parse_args(argv)


def _write(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv=None):
    args = parse_args(argv)
    try:
        rows = load_rows(args.files)
        if not rows:
            print("bench_table: no rows in " + ", ".join(args.files), file=sys.stderr)
            return 1
        text = render(rows, args.targets, args.speed_target)
        if args.markdown:
            _write(args.markdown, text)
            print(f"bench_table: wrote {args.markdown}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        if args.json:
            _write(args.json, json.dumps(rows, indent=1) + "\n")
            print(f"bench_table: wrote {args.json} ({len(rows)} rows)", file=sys.stderr)
        if args.plot:
            plot(rows, args.plot, args.title)
            print(f"bench_table: wrote {args.plot}", file=sys.stderr)
    except (InputError, OSError) as e:
        print(f"bench_table: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
