#!/usr/bin/env bash
# Our per-token mask time next to xgrammar-wasm's, in one run on one machine (issue #17: "p50 <= 50
# us, p99 <= 1 ms, next to xgrammar-wasm's figure in the same run"): mask_benchmark's MaskWarm,
# Compile and Precompute cases (fresh vocabulary), then xgrammar_mask_time.mjs on the same cases,
# documents and token ids (checked against muse-tokenize), back to back, 1 thread each. Prints the
# date, CPU model, load average before each half, and both outputs.
#
#   benchmarks/structured/mask_vs_xgrammar.sh [--build-dir DIR] [--passes N]
# DIR (default build) must hold bin/mask_benchmark and bin/muse-tokenize
# (cmake --build DIR --target mask_benchmark muse-tokenize); xgrammar and the tokenizer come from
# tests/node/node_modules (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
build=build passes=3
while [[ $# -gt 0 ]]; do
  case $1 in
    --build-dir) build=$2; shift 2 ;;
    --passes) passes=$2; shift 2 ;;
    *) echo "usage: $0 [--build-dir DIR] [--passes N]" >&2; exit 2 ;;
  esac
done
for bin in mask_benchmark muse-tokenize; do
  if [[ ! -x $build/bin/$bin ]]; then
    echo "$0: $build/bin/$bin not found; build it with cmake --build $build --target $bin" >&2
    exit 1
  fi
done
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo
echo "== ours: $build/bin/mask_benchmark (load average $(cut -d' ' -f1-3 /proc/loadavg)) =="
"$build/bin/mask_benchmark" --benchmark_filter='^(MaskWarm|Compile|Precompute)/' \
  --benchmark_format=console 2>&1 | grep -E '^(Benchmark|-+$|MaskWarm|Compile|Precompute)'
echo
echo "== xgrammar-wasm: benchmarks/structured/xgrammar_mask_time.mjs" \
  "(load average $(cut -d' ' -f1-3 /proc/loadavg)) =="
node benchmarks/structured/xgrammar_mask_time.mjs --passes="$passes" \
  --muse-tokenize="$build/bin/muse-tokenize"
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
