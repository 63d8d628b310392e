#!/usr/bin/env bash
# Configures and builds foak in build/ (Ninja, ccache when present).
# Usage: scripts/build.sh [ninja targets...]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${FOAK_BUILD_DIR:-build}"
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${FOAK_BUILD_TYPE:-RelWithDebInfo}"
fi
ninja -C "$BUILD_DIR" -j"${FOAK_JOBS:-$(nproc)}" "$@"
