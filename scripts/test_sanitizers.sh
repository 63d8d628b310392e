#!/usr/bin/env bash
# The unit tests that do not link LibTorch (coordinator, client, common and the
# torch-free worker libraries: model_core, data, tokenizer, lora_core,
# train_core, ...) built with AddressSanitizer + UndefinedBehaviorSanitizer
# (GCC) in build-asan/, plus the fuzz targets replaying their seed corpus
# (label fuzz). Any sanitizer report fails the test that triggered it:
# UBSan findings abort (-fno-sanitize-recover), leaks fail at exit.
# scripts/test.sh runs this after the main tests.
#
# Usage: scripts/test_sanitizers.sh [ctest args...]
# Environment: FOAK_ASAN_DIR (build folder, default build-asan), FOAK_JOBS.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${FOAK_ASAN_DIR:-build-asan}"
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  # -O0: with the sanitizers on, -O1 doubles a file's compile time (CPU
  # seconds for server/domain/job_spec.cc: 28 at -O1, 12 at -O0, 14 in the
  # main build at -O2), and the unit tests take well under a minute at -O0.
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g -O0" \
    -DCMAKE_C_FLAGS_DEBUG="-g -O0" -DFOAK_SANITIZE=ON -DFOAK_BUILD_BENCH=OFF -DFOAK_COMPILE_CUDA=OFF
fi
export ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
ninja -C "$BUILD_DIR" -j"${FOAK_JOBS:-$(nproc)}" foak_sanitize_tests
# Excluded: SentencePieceTest loads the SentencePiece module with
# dlopen(RTLD_DEEPBIND) (worker/tokenizer/sentencepiece_backend.h says why),
# which the sanitizer runtime refuses (google/sanitizers#611); the main build
# runs it.
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" --timeout 600 \
  -E '^SentencePieceTest\.' "$@"
