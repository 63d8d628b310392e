#!/usr/bin/env bash
# foakd under load (issue 9): builds foakd and bench/foakd_load_bench.cc, then
# runs the bench (1,000 WatchJob streams, 200 CreateJob/s for 60 s against a
# foakd it starts on loopback) and writes OUTDIR/load.json (every figure and
# the per-second samples), OUTDIR/load.txt (the printed table) and
# OUTDIR/machine.txt (CPU, memory, load average before and after).
#
#   scripts/bench_load.sh OUTDIR [bench flags...]
#   e.g. scripts/bench_load.sh out/load --watchers 1000 --rate 200 --duration_s 60
#
# FOAK_BUILD_DIR (default build) and FOAK_JOBS are scripts/build.sh's. The
# bench client shares the machine with foakd: on a small machine the figures
# include that contention (the table reports both processes' CPU).
set -euo pipefail

[ $# -ge 1 ] || { sed -n '8,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
OUTDIR="$1"; shift
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${FOAK_BUILD_DIR:-build}"
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR="$REPO/$BUILD_DIR" ;; esac

FOAK_BUILD_DIR="$BUILD_DIR" bash "$REPO/scripts/build.sh" foakd foak_foakd_load_bench
mkdir -p "$OUTDIR"
{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo ' (plus uncommitted changes)')"
  echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "memory: $(free -m | awk '/^Mem:/ {print $2 " MiB"}')"
  echo "os: $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUTDIR/machine.txt"
"$BUILD_DIR/bench/foak_foakd_load_bench" --json "$OUTDIR/load.json" "$@" | tee "$OUTDIR/load.txt"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUTDIR/machine.txt"
cat "$OUTDIR/machine.txt"
