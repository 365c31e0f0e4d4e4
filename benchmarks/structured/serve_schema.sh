#!/usr/bin/env bash
# Serving throughput with a JSON schema on every request vs the same workload unconstrained
# (issue #17's ">= 0.90x"), one muse-server, runs interleaved (free, schema, free, schema, ...)
# so machine drift hits both. Prints each run's output tok/s and mean output length, then the
# ratio of the medians.
#
#   benchmarks/structured/serve_schema.sh [--rounds 3] [--schema FILE] [--match-length]
#                                         -- [muse-server flags]
# Defaults: models/muse-tiny, --threads 2, 200 requests of 32 random prompt tokens and up to 128
# output tokens, 16 at a time. A schema whose documents end early makes its requests shorter, so
# more of them arrive (and prefill) per output token; --match-length runs each round's schema run
# first and gives the free run that round's mean output length, so both serve the same tokens.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
rounds=3 schema=benchmarks/structured/tool_schema.json match=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --schema) schema=$2; shift 2 ;;
    --match-length) match=1; shift ;;
    --) shift; break ;;
    *) echo "usage: $0 [--rounds N] [--schema FILE] [--match-length] -- [muse-server flags]" >&2; exit 2 ;;
  esac
done
port=$((20000 + RANDOM % 20000))
build/bin/muse-server --model models/muse-tiny --port "$port" --no-auth --threads 2 "$@" \
  2> /tmp/serve_schema.$$.log &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -f /tmp/serve_schema.$$.log' EXIT
bench=(build/bin/muse-bench --port "$port" --wait-for-server 120 --no-progress
       --dataset-name random --random-input-len 32 --num-prompts 200
       --max-concurrency 16 --temperature 1 --seed 5 --warmup 4)
free=() constrained=() free_tpot=() constrained_tpot=()
modes=(free schema)
[[ $match == 1 ]] && modes=(schema free)
length=128
for ((r = 0; r < rounds; ++r)); do
  for mode in "${modes[@]}"; do
    extra=(--random-output-len 128)
    [[ $mode == schema ]] && extra+=(--json-schema "$schema")
    [[ $mode == free && $match == 1 ]] && extra=(--random-output-len "$length")
    out=$("${bench[@]}" "${extra[@]}")
    tps=$(awk '/Output token throughput/ {print $5}' <<< "$out")
    toks=$(awk '/Total generated tokens/ {print $4}' <<< "$out")
    tpot=$(awk '/Mean TPOT/ {print $4}' <<< "$out")
    [[ $mode == schema ]] && length=$(( (toks + 100) / 200 ))
    echo "round $r $mode: $tps tok/s, mean TPOT $tpot ms, $((toks / 200)) output tokens per request, load $(cut -d' ' -f1 /proc/loadavg)"
    if [[ $mode == free ]]; then
      free+=("$tps") free_tpot+=("$tpot")
    else
      constrained+=("$tps") constrained_tpot+=("$tpot")
    fi
  done
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
f=$(median "${free[@]}") c=$(median "${constrained[@]}")
echo "median: free $f tok/s, schema $c tok/s, ratio $(awk -v a="$c" -v b="$f" 'BEGIN {printf "%.2f", a / b}')"
# A schema ends requests early (the grammar completes), so each costs its prefill over fewer
# output tokens; the decode-speed ratio (time per output token) compares the steps themselves.
ft=$(median "${free_tpot[@]}") ct=$(median "${constrained_tpot[@]}")
echo "median TPOT: free $ft ms, schema $ct ms, decode speed ratio $(awk -v a="$ft" -v b="$ct" 'BEGIN {printf "%.2f", a / b}')"
