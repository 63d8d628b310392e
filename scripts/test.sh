#!/usr/bin/env bash
# The test command: installs what is missing, builds everything, runs every
# test. GPU-labelled tests skip themselves on a machine without CUDA. Then the
# torch-free unit tests and the fuzz corpus replay run again under ASan and
# UBSan in build-asan/ (scripts/test_sanitizers.sh; FOAK_SKIP_SANITIZERS=1
# skips that stage, e.g. while iterating on one test).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/build.sh
BUILD_DIR="${FOAK_BUILD_DIR:-build}"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" --timeout 600 "$@"
if [ "${FOAK_SKIP_SANITIZERS:-0}" != "1" ]; then
  bash scripts/test_sanitizers.sh
fi
