#!/usr/bin/env bash
# Fails when an include runs up a layer. Layers, bottom up:
#   kernels/{cpu,cuda} -> models/ -> src/runtime -> src/engine -> src/server -> tools/
# Beside them: src/common (below everything), src/tokenizer, src/vision, src/audio, src/collective, src/structured and src/chat
# (over common and kernels only; models may use them; src/chat uses tokenizer and structured).
# models/testing/ holds fixtures (random checkpoints) for tools, tests and benchmarks only. Also
# fails when CUDA headers reach the engine or scheduler, or when the Llama weight names appear
# outside models/llama/llama_weights.cc.
# Usage: scripts/check_layers.sh   (prints every violation as file:line: include; exit 1 if any)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Rank of a path's layer: an include may only go to an equal or lower rank.
rank() {
  case "$1" in
    src/common/*) echo 0 ;;
    kernels/*) echo 1 ;;
    src/tokenizer/*|src/vision/*|src/audio/*|src/collective/*|src/structured/*|src/chat/*) echo 2 ;;  # beside the stack: plain C++ over common (+ kernels)
    models/*) echo 3 ;;
    src/runtime/*) echo 4 ;;
    src/engine/*) echo 5 ;;
    src/server/*) echo 6 ;;
    tools/*) echo 7 ;;
    *) echo "" ;;
  esac
}

violations=0
report() { echo "$1"; violations=$((violations + 1)); }

while IFS= read -r f; do
  from=$(rank "$f")
  [ -n "$from" ] || continue
  while IFS=: read -r line inc; do
    target=$(sed -E 's/.*#include "([^"]+)".*/\1/' <<<"$inc")
    to=$(rank "$target")
    [ -n "$to" ] || continue
    if [ "$to" -gt "$from" ]; then
      report "$f:$line: includes $target (a higher layer)"
    fi
    case "$f" in
      kernels/cpu/*) [[ "$target" == kernels/cuda/* ]] && report "$f:$line: CPU kernels include $target" ;;
      kernels/cuda/*) [[ "$target" == kernels/cpu/* ]] && report "$f:$line: CUDA kernels include $target" ;;
    esac
    # Fixtures are for tools, tests and benchmarks only.
    if [[ "$target" == models/testing/* && "$f" != models/testing/* && "$f" != tools/* ]]; then
      report "$f:$line: includes the fixture $target"
    fi
  done < <(grep -nE '^\s*#\s*include\s+"' "$f" || true)
done < <(git ls-files 'kernels/*' 'models/*' 'src/*' 'tools/*' | grep -E '\.(h|cc|cu|cuh)$')

# Engine and scheduler code (and every header the server includes) stays free of CUDA and ATen.
while IFS=: read -r f line inc; do
  report "$f:$line: $inc (no CUDA or libtorch headers in src/engine or src/server)"
done < <(git grep -nE '#\s*include\s+[<"](cuda|cublas|ATen/|torch/|kernels/cuda/)' -- src/engine src/server || true)

# The Llama family's weight names are written once.
while IFS=: read -r f line _; do
  report "$f:$line: a Llama weight name outside models/llama/llama_weights.cc"
done < <(git grep -nE '"[^"]*(q_proj|gate_proj|embed_tokens|input_layernorm|post_attention_layernorm)' \
           -- kernels models src tools ':!models/llama/llama_weights.cc' ':!models/llava/*' ':!models/qwen2_audio/*' || true)

if [ "$violations" -gt 0 ]; then
  echo "check_layers: $violations violation(s)" >&2
  exit 1
fi
echo "check_layers: ok (no include runs up a layer; Llama weight names in one file)"
