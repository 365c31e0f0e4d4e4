#!/usr/bin/env bash
# Runs the C++ tokenizer benchmark and the reference (Rust binding / JS) benchmark on the same corpus.
# usage: benchmarks/tokenizer/run_bench.sh BUILD_DIR [NODE_PROJECT_DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:?usage: run_bench.sh BUILD_DIR [NODE_PROJECT_DIR]}"
node_dir="${2:-$root/tests/node}"
corpus="$build/tokenizer_bench_corpus.json"
node "$root/tests/tokenizer/make_corpus.mjs" "$corpus"
"$build/bin/tokenizer_benchmark" --corpus="$corpus" --node_dir="$node_dir"
node "$root/benchmarks/tokenizer/bench_reference.mjs" "$node_dir"
