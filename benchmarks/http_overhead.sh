#!/usr/bin/env bash
# HTTP (OpenAI API, SSE) vs gRPC output throughput at saturation against a running muse-server:
# `muse-bench --backend grpc,<http backends>` repeated --rounds times, the backend order rotated
# each round (so neither face always runs first on a busy machine), then per round the HTTP
# loss (1 - http/grpc) x 100 % and the median over rounds. Per-round JSON in --out.
#
#   benchmarks/http_overhead.sh --port 50051 --http-port 8000 --rounds 4 --out results/http \
#       -- --dataset-name random --random-input-len 128 --random-output-len 128 \
#          --num-prompts 500 --rates inf --max-concurrency 96
set -euo pipefail
bench=build/bin/muse-bench port=50051 http_port=8000 rounds=3 out=results/http_overhead
backends=openai-completions,openai-chat
while [[ $# -gt 0 ]]; do
  case $1 in
    --bench) bench=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --http-port) http_port=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --backends) backends=$2; shift 2 ;;  # the HTTP ones; grpc is always added
    --out) out=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [--bench B] [--port P] [--http-port P] [--rounds N] [--backends L] [--out DIR] -- muse-bench args" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
IFS=, read -r -a list <<< "grpc,$backends"
for ((r = 0; r < rounds; r++)); do
  order=("${list[@]:r % ${#list[@]}}" "${list[@]:0:r % ${#list[@]}}")
  joined=$(IFS=,; echo "${order[*]}")
  echo "round $r: $joined (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  "$bench" --port "$port" --http-port "$http_port" --backend "$joined" --seed "$r" --no-progress \
    --result-json "$out/round$r.json" "$@" > "$out/round$r.txt"
done
# One line per (round, backend, rate), then the median loss per backend and rate.
jq -s -r '[.[] | .http_vs_grpc[]] as $all
  | ($all[] | "\(.backend) rate \(.request_rate): grpc \(.grpc_output_tok_s * 10 | round / 10) http \(.http_output_tok_s * 10 | round / 10) tok/s, loss \(.overhead_pct * 100 | round / 100) %"),
    ($all | group_by([.backend, (.request_rate | tostring)])[]
     | (map(.overhead_pct) | sort) as $v | ($v | length) as $n
     | "median loss \(.[0].backend) rate \(.[0].request_rate): \((if $n % 2 == 1 then $v[($n - 1) / 2] else ($v[$n / 2 - 1] + $v[$n / 2]) / 2 end) * 100 | round / 100) % over \($n) rounds")' \
  "$out"/round*.json
