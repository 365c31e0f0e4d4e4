#!/usr/bin/env bash
# muse-generate end to end: the engine path (--prompts-file, several prompts in flight) gives the
# same greedy ids as the direct runner path for each prompt; bad input fails with a message; the
# command-line conventions (--help, --flag=value, exit 2 on usage errors, only results on stdout).
set -euo pipefail
BIN="$1"; WORK="$(mktemp -d /tmp/muse-gen-XXXXXX)"; trap 'rm -rf "$WORK"' EXIT
"$BIN/muse-make-model" --preset tiny --vocab 3000 --seed 4 --out "$WORK/m" >/dev/null
prompts=("1,5,9,200" "1,2999,17,17,17,3,999,2048,7" "1,100,200,300,400,500,600,700,800,900,1000,1100,1200,1300,1400,1500,1600,1700" "1,5,9,200")
: > "$WORK/prompts.txt"
for p in "${prompts[@]}"; do echo "ids:$p" >> "$WORK/prompts.txt"; done
"$BIN/muse-generate" --model "$WORK/m" --prompts-file "$WORK/prompts.txt" --concurrency 3 \
  --max-tokens 20 --quiet > "$WORK/engine.jsonl"
[ "$(wc -l < "$WORK/engine.jsonl")" -eq "${#prompts[@]}" ] || { echo "wrong number of result lines"; exit 1; }
i=0
for p in "${prompts[@]}"; do
  direct=$("$BIN/muse-generate" --model "$WORK/m" --prompt-ids "$p" --max-tokens 20 --quiet 2>/dev/null | head -1)
  via_engine=$(sed -n "$((i + 1))p" "$WORK/engine.jsonl" | /usr/bin/python3 -c \
    'import json,sys; print(",".join(map(str, json.load(sys.stdin)["samples"][0]["token_ids"])))')
  [ "$direct" == "$via_engine" ] || { echo "prompt $i: direct $direct != engine $via_engine"; exit 1; }
  [ "$i" -gt 0 ] || first_direct="$direct"
  i=$((i + 1))
done
echo "engine path == direct path for ${#prompts[@]} prompts"
# Errors name the problem and exit non-zero.
echo "ids:1,x" > "$WORK/bad.txt"
if "$BIN/muse-generate" --model "$WORK/m" --prompts-file "$WORK/bad.txt" 2> "$WORK/err"; then exit 1; fi
grep -q "bad.txt:1: bad token id" "$WORK/err"
if "$BIN/muse-generate" --model "$WORK/m" --prompt-ids 1,3000 --quiet 2> "$WORK/err"; then exit 1; fi
grep -q "input_ids" "$WORK/err"
# Usage errors exit 2 and name the flag; --help is on stdout with exit 0.
usage_error() {  # usage_error FLAG-IN-MESSAGE ARGS...
  local want="$1" rc=0; shift
  "$BIN/muse-generate" "$@" > "$WORK/out" 2> "$WORK/err" || rc=$?
  [ "$rc" -eq 2 ] || { echo "muse-generate $*: exit $rc, want 2"; cat "$WORK/err"; exit 1; }
  grep -q -- "$want" "$WORK/err" || { echo "muse-generate $*: stderr lacks $want"; cat "$WORK/err"; exit 1; }
  [ ! -s "$WORK/out" ] || { echo "muse-generate $*: wrote to stdout"; exit 1; }
}
usage_error "--max-tokens: must be >= 1" --model "$WORK/m" --prompt-ids 1,5 --max-tokens=0
usage_error "--batch" --model "$WORK/m" --prompt-ids 1,5 --batch 0
usage_error "--max-tokens" --model "$WORK/m" --prompt-ids 1,5 --max-tokens
usage_error "--temperature" --model "$WORK/m" --prompt-ids 1,5 --temperature 0.5  # engine path only
usage_error "--prompt" --model "$WORK/m" --prompt-ids 1,5 --prompt "two inputs"
usage_error "--dtype" --model "$WORK/m" --prompt-ids 1,5 --dtype int8
usage_error "--bogus" --model "$WORK/m" --prompt-ids 1,5 --bogus
"$BIN/muse-generate" --help > "$WORK/help" 2> "$WORK/err"
grep -q -- "--prompts-file" "$WORK/help" && [ ! -s "$WORK/err" ]
# --flag=value works, and stdout holds the ids alone: the runner's log line goes to stderr.
"$BIN/muse-generate" --model="$WORK/m" --prompt-ids=1,5,9,200 --max-tokens=20 > "$WORK/ids" 2> "$WORK/log"
[ "$(cat "$WORK/ids")" == "$first_direct" ] || { echo "stdout: $(cat "$WORK/ids") != $first_direct"; exit 1; }
grep -q "runner" "$WORK/log" || { echo "no runner log line on stderr"; cat "$WORK/log"; exit 1; }
echo ok
