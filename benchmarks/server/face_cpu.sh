#!/usr/bin/env bash
# Server CPU seconds and context switches per thread group (/proc/PID/task/*/comm: muse-server =
# engine + compute, muse-pump + gRPC's threads = gRPC face, muse-http = HTTP face) and the
# client's CPU, over one muse-bench run per backend -- what each face costs per output token,
# robust to a machine shared with other work (wall-clock tok/s is not).
#
#   benchmarks/server/face_cpu.sh --pid $(pgrep -n muse-server) --port 50051 --http-port 8000 \
#       --backends grpc,openai-completions,openai-chat -- --dataset-name random \
#       --random-input-len 128 --random-output-len 128 --num-prompts 500 --rates inf \
#       --max-concurrency 96 --seed 9
set -euo pipefail
bench=build/bin/muse-bench pid= port=50051 http_port=8000 backends=grpc,openai-completions
while [[ $# -gt 0 ]]; do
  case $1 in
    --bench) bench=$2; shift 2 ;;
    --pid) pid=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --http-port) http_port=$2; shift 2 ;;
    --backends) backends=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 --pid PID [--bench B] [--port P] [--http-port P] [--backends L] -- muse-bench args" >&2; exit 2 ;;
  esac
done
[[ -n $pid ]] || { echo "$0: --pid (the muse-server) is required" >&2; exit 2; }
tck=$(getconf CLK_TCK)
snap() {  # comm cpu_ticks voluntary involuntary, summed per thread name
  for t in /proc/"$pid"/task/*; do
    printf '%s %s %s\n' "$(tr ' ' _ < "$t/comm")" "$(awk '{print $14 + $15}' "$t/stat")" \
      "$(awk '/^voluntary_ctxt/ {v = $2} /^nonvoluntary_ctxt/ {n = $2} END {print v, n}' "$t/status")"
  done | awk '{c[$1] += $2; v[$1] += $3; n[$1] += $4} END {for (k in c) print k, c[k], v[k], n[k]}' | sort
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
IFS=, read -r -a list <<< "$backends"
for b in "${list[@]}"; do
  snap > "$tmp/before"
  /usr/bin/time -f "%U %S" -o "$tmp/time" "$bench" --port "$port" --http-port "$http_port" \
    --backend "$b" --no-progress "$@" > "$tmp/out"
  snap > "$tmp/after"
  tokens=$(awk '/Total generated tokens/ {print $4}' "$tmp/out")
  echo "== $b: $(awk '/Output token throughput/ {print $5}' "$tmp/out") tok/s, $tokens output tokens," \
    "client CPU $(awk '{print $1 + $2}' "$tmp/time") s, load $(cut -d' ' -f1 /proc/loadavg)"
  join "$tmp/before" "$tmp/after" | awk -v t="$tck" -v n="$tokens" '{
      cpu = ($5 - $2) / t; vol = $6 - $3; inv = $7 - $4
      if (cpu > 0.01 || vol + inv > 100)
        printf "  %-18s CPU %7.2f s (%5.1f us/token)  switches: voluntary %7d involuntary %7d\n",
               $1, cpu, cpu / n * 1e6, vol, inv}'
done
