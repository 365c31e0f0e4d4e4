#!/usr/bin/env bash
# CPU decode of the `small` preset (fp32) at batch 1, 8 and 32, side by side with llama.cpp on the
# same checkpoint, in one run. Prints a markdown table: tok/s (all tokens over wall time including
# the prompt, as llamacpp_run.mjs counts), weight-read GB/s, ratio to llama.cpp, and our
# decode-only tok/s (muse-generate's decode steps) with its ratio to our batch 1.
# usage: benchmarks/runtime/cpu_vs_llamacpp.sh [max_tokens=64] [threads=2]
#   MUSE_BIN=DIR picks the muse binaries (default build/bin), e.g. another checkout's build for a
#   before/after comparison on the same model and the same llama.cpp in one sitting.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/scripts/peers.sh"
BIN="${MUSE_BIN:-$ROOT/build/bin}"; N="${1:-64}"; THREADS="${2:-2}"
MODEL="$ROOT/models/small"; GGUF="$ROOT/build/peers/small.gguf"
[ -f "$MODEL/model.safetensors" ] || "$BIN/muse-make-model" --preset small --seed 0 --out "$MODEL" >/dev/null
mkdir -p "$(dirname "$GGUF")"
[ -f "$GGUF" ] || /usr/bin/python3 "$PEERS_DIR/hf_to_gguf.py" "$MODEL" "$GGUF" f32 >/dev/null
ensure_llamacpp
PROMPT="1,306,4086,338,263,1243,29892,322,372,1818,367,3762,1784,2745,278,1095"
# Bytes of weights read per decode step: every parameter except the embedding table (one row).
WBYTES=$(/usr/bin/python3 - "$MODEL" <<'PY'
import json, sys
c = json.load(open(sys.argv[1] + "/config.json"))
H, I, L, V = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
D = c.get("head_dim", H // c["num_attention_heads"]); nh, kv = c["num_attention_heads"], c["num_key_value_heads"]
per_layer = H * (nh * D) * 2 + H * (kv * D) * 2 + 3 * H * I + 2 * H
print((L * per_layer + H + V * H) * 4)
PY
)
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; date $(date -u +%F)"
echo "tok/s on both sides = all generated tokens / wall time including the prompt (as llamacpp_run.mjs counts)"
echo "model: small preset, fp32, weights read per step: $((WBYTES / 1000000)) MB; $N new tokens; $THREADS threads"
echo
echo "| batch | muse tok/s | muse GB/s | llama.cpp tok/s | llama.cpp GB/s | muse / llama.cpp | muse decode-only tok/s | decode / our batch 1 |"
echo "|---|---|---|---|---|---|---|---|"
DEC1=""
for B in 1 8 32; do
  line=$("$BIN/muse-generate" --model "$MODEL" --prompt-ids "$PROMPT" --max-tokens "$N" \
           --threads "$THREADS" --batch "$B" --quiet 2>&1 >/dev/null | tail -1)
  ours=$(echo "$line" | sed -n 's/.*overall \([0-9.]*\) tok\/s.*/\1/p')
  dec=$(echo "$line" | sed -n 's/.* = \([0-9.]*\) tok\/s (.*/\1/p')
  [ -n "$DEC1" ] || DEC1="$dec"
  theirs=$(node "$PEERS_DIR/llamacpp_run.mjs" "$LLAMACPP_DIR" "$GGUF" "$PROMPT" "$N" "$THREADS" "$B" 2>&1 >/dev/null |
           sed -n 's/.*= \([0-9.]*\) tok\/s total.*/\1/p')
  /usr/bin/python3 -c "
o, t, w, b, d, d1 = $ours, $theirs, $WBYTES, $B, $dec, $DEC1
print(f'| {b} | {o:.1f} | {o / b * w / 1e9:.1f} | {t:.1f} | {t / b * w / 1e9:.1f} | {o / t:.2f}x | {d:.1f} | {d / d1:.2f}x |')"
done
