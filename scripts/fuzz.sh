#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang in build-fuzz/ and runs each
# for SECONDS_PER_TARGET (default 60) on its seed corpus, with AddressSanitizer
# (leak detection on) and UndefinedBehaviorSanitizer. Exits non-zero when any
# target crashed, leaked, hung (one input over FUZZ_TIMEOUT seconds) or ran out
# of memory; the reproducer is kept in build-fuzz/findings/<target>/.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   targets: safetensors_header tokenizer_json jsonl_dataset job_spec (default: all)
# Environment: FOAK_FUZZ_DIR (build folder, default build-fuzz), FOAK_JOBS
# (build parallelism, default nproc), FUZZ_TIMEOUT (seconds per input,
# default 10), FUZZ_RSS_MB (memory limit, default 2048).
# Reproduce a finding: build-fuzz/fuzz/<target>_fuzz <file>.
# New inputs that add coverage go to build-fuzz/corpus/<target>/, never into
# the committed seeds; copy an interesting one to fuzz/corpus/<target>/ by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-60}"
shift || true
BUILD_DIR="${FOAK_FUZZ_DIR:-build-fuzz}"
TIMEOUT="${FUZZ_TIMEOUT:-10}"
RSS_MB="${FUZZ_RSS_MB:-2048}"

for tool in clang clang++; do
  if ! command -v "$tool" >/dev/null; then
    echo "fuzz.sh: $tool not found; install Debian's clang and libFuzzer: apt-get install clang libclang-rt-14-dev" >&2
    exit 2
  fi
done

if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DFOAK_FUZZ=ON -DFOAK_BUILD_TESTS=OFF -DFOAK_BUILD_BENCH=OFF -DFOAK_COMPILE_CUDA=OFF
fi
ninja -C "$BUILD_DIR" -j"${FOAK_JOBS:-$(nproc)}" foak_fuzz_targets

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  for bin in "$BUILD_DIR"/fuzz/*_fuzz; do
    name="$(basename "$bin")"
    targets+=("${name%_fuzz}")
  done
fi

# Leaks fail a run; a sanitizer report aborts so libFuzzer saves the input.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:symbolize=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

failed=()
summary=()
for t in "${targets[@]}"; do
  bin="$BUILD_DIR/fuzz/${t}_fuzz"
  seeds="fuzz/corpus/$t"
  if [ ! -x "$bin" ] || [ ! -d "$seeds" ]; then
    echo "fuzz.sh: no target '$t' (expected $bin and $seeds)" >&2
    exit 2
  fi
  work="$BUILD_DIR/corpus/$t"
  findings="$BUILD_DIR/findings/$t"
  log="$BUILD_DIR/findings/$t.log"
  # Scratch files of the targets (fuzz_util.h): libFuzzer ends a timed run
  # without running atexit handlers, so they go in a folder removed here.
  scratch="$BUILD_DIR/tmp/$t"
  mkdir -p "$work" "$findings" "$scratch"
  echo "=== $t: ${SECONDS_PER_TARGET}s (timeout ${TIMEOUT}s per input, rss limit ${RSS_MB} MB)"
  rc=0
  # The first folder receives new inputs; the committed seeds are read only.
  TMPDIR="$(cd "$scratch" && pwd)" "$bin" "$work" "$seeds" -max_total_time="$SECONDS_PER_TARGET" -timeout="$TIMEOUT" \
    -rss_limit_mb="$RSS_MB" -detect_leaks=1 -print_final_stats=1 \
    -artifact_prefix="$findings/" >"$log" 2>&1 || rc=$?
  rm -rf "$scratch"
  runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)"
  if [ "$rc" -eq 0 ]; then
    summary+=("$t: ok, ${runs:-?} runs, ${cov:-cov: ?}")
  else
    artifact="$(grep -o "Test unit written to [^ ]*" "$log" | tail -1 | sed 's/Test unit written to //' || true)"
    kind="$(grep -oE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer): [a-z-]+[a-z -]*' "$log" | head -1 || true)"
    [ -z "$kind" ] && kind="$(grep -m1 -E 'runtime error|invariant broken' "$log" || true)"
    summary+=("$t: FAILED (exit $rc) ${kind:-see log}; reproducer ${artifact:-none}; log $log")
    failed+=("$t")
    tail -n 60 "$log" >&2
  fi
done

echo
echo "fuzz.sh summary (${SECONDS_PER_TARGET}s per target):"
for line in "${summary[@]}"; do echo "  $line"; done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz.sh: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
  exit 1
fi
