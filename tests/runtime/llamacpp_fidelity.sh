#!/usr/bin/env bash
# Greedy ids of our CPU runtime == llama.cpp's on the same random Llama checkpoint (several
# prompts, batch 1 and batch 4). Exit 77 (ctest skip) only when node or the peer is absent.
set -euo pipefail
BIN="$1"; WORK="$(mktemp -d /tmp/muse-fidelity-XXXXXX)"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/scripts/peers.sh"
command -v node >/dev/null || { echo "node not installed"; exit 77; }
[ -f "$PEERS_DIR/llamacpp_run.mjs" ] || { echo "no llama.cpp peer at $PEERS_DIR"; exit 77; }
ensure_llamacpp
"$BIN/muse-make-model" --arch llama --preset small --hidden 256 --layers 4 --heads 8 \
  --kv-heads 2 --ffn 688 --vocab 4096 --seed 11 --out "$WORK/model" >/dev/null
/usr/bin/python3 "$PEERS_DIR/hf_to_gguf.py" "$WORK/model" "$WORK/model.gguf" f32 >/dev/null
fail=0
for prompt in "1,5,9,200" "1,4000,17,17,17,3,999,2048,7" "1,100,200,300,400,500,600,700,800,900,1000,1100,1200,1300,1400,1500,1600,1700"; do
  ours=$("$BIN/muse-generate" --model "$WORK/model" --prompt-ids "$prompt" --max-tokens 48 \
           --threads 2 --quiet 2>/dev/null | tr ',' ' ')
  ours4=$("$BIN/muse-generate" --model "$WORK/model" --prompt-ids "$prompt" --max-tokens 48 \
           --threads 2 --batch 4 --quiet 2>/dev/null | tr ',' ' ')
  theirs=$(node "$PEERS_DIR/llamacpp_run.mjs" "$LLAMACPP_DIR" "$WORK/model.gguf" "$prompt" 48 2 2>/dev/null)
  if [ "$ours" == "$theirs" ] && [ "$ours4" == "$theirs" ]; then
    echo "prompt $prompt: 48 ids identical"
  else
    echo "MISMATCH for prompt $prompt"; echo " ours:      $ours"; echo " ours (b4): $ours4"; echo " llama.cpp: $theirs"; fail=1
  fi
done
rm -rf "$WORK"
exit $fail
