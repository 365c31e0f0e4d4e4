#!/usr/bin/env bash
# Do new structured-output schemas stall unrelated streams? (issue #17: compiling a new schema and
# its token classes takes ~0.1-1 s; on a gRPC thread that stalled the streams it served.)
# One muse-server; per round an unconstrained muse-bench run (4 streams at a time) and, 0.5 s into
# it, N concurrent requests each with a schema no earlier request sent (a variant of
# tool_schema.json with round- and request-unique property names and string bounds). Prints the
# unconstrained run's max and p99 inter-token latency per round, then the medians.
#
#   benchmarks/structured/compile_stall.sh [--server BIN] [--rounds 3] [--schemas 4] \
#       -- [muse-server flags]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
server_bin=build/bin/muse-server rounds=3 schemas=4
while [[ $# -gt 0 ]]; do
  case $1 in
    --server) server_bin=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --schemas) schemas=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [--server BIN] [--rounds N] [--schemas N] -- [muse-server flags]" >&2; exit 2 ;;
  esac
done
tmp=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
"$server_bin" --model models/muse-tiny --port "$port" --no-auth --threads 2 "$@" 2> "$tmp/server.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$tmp"' EXIT
bench=(build/bin/muse-bench --port "$port" --wait-for-server 120 --no-progress --dataset-name random
       --random-input-len 32 --temperature 0)
# One unconstrained request first, so the server is up and warm.
"${bench[@]}" --num-prompts 1 --warmup 0 --random-output-len 8 > /dev/null
maxes=() p99s=()
for ((r = 0; r < rounds; ++r)); do
  "${bench[@]}" --num-prompts 24 --max-concurrency 4 --random-output-len 256 --warmup 0 \
    --seed "$r" --result-json "$tmp/free.json" > /dev/null &
  free=$!
  sleep 0.5
  pids=()
  for ((i = 0; i < schemas; ++i)); do
    u="r${r}_${i}_$$"
    sed -e "s/\"query\"/\"query_$u\"/g; s/\"city\"/\"city_$u\"/g; s/\"tags\"/\"tags_$u\"/g" \
        -e "s/\"maxLength\": 64/\"maxLength\": $((40 + i + 4 * r))/" \
        benchmarks/structured/tool_schema.json > "$tmp/schema_$i.json"
    "${bench[@]}" --num-prompts 1 --warmup 0 --random-output-len 128 --temperature 1 \
      --json-schema "$tmp/schema_$i.json" > /dev/null &
    pids+=($!)
  done
  wait "${pids[@]}" "$free"
  read -r mx p99 ttft dur < <(python3 -c "
import json, sys
s = json.load(open('$tmp/free.json'))['runs'][0]['summary']
print('%.0f %.0f %.0f %.1f' % (s['max_itl_ms'], s['p99_itl_ms'], s['max_ttft_ms'], s['duration']))")
  echo "round $r: unconstrained run (${dur} s): max ITL ${mx} ms, p99 ITL ${p99} ms, max TTFT ${ttft} ms; $schemas new schemas sent 0.5 s in"
  maxes+=("$mx") p99s+=("$p99")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
echo "median: max ITL $(median "${maxes[@]}") ms, p99 ITL $(median "${p99s[@]}") ms"
grep -h "warm-up" "$tmp/server.log" >&2 || true
