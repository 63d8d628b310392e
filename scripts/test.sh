#!/usr/bin/env bash
# The test command: installs what is missing, builds everything, runs every
# test. GPU-labelled tests skip themselves on a machine without CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/build.sh
BUILD_DIR="${FOAK_BUILD_DIR:-build}"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" --timeout 600 "$@"
