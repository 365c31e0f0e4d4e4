#!/usr/bin/env bash
# Serving-curve sweep: start muse-server on a free loopback port, wait until it answers, run
# muse-bench over a list of request rates, write summary/JSON/HTML into a results dir, stop the
# server (also on error or Ctrl-C).
#
#   benchmarks/serve_sweep.sh --model models/muse-tiny --rates 1,2,4,8,inf --out results/tiny \
#       [--build build] [--server-arg --max-num-seqs --server-arg 64] [--api-keys FILE]
#       [-- <muse-bench args>]
#
# Everything after `--` goes to muse-bench (e.g. --dataset-name random --random-input-len 128
# --random-output-len 64 --num-prompts 200 --seed 0). --server-arg passes one word to muse-server.
# --api-keys FILE starts the server with that keys file instead of --no-auth (give muse-bench
# --api-key KEY after `--`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${MUSE_BUILD_DIR:-$here/build}"
model="" out="" rates="1,2,4,8,inf" server_bin="" bench_bin="" wait_s=600 auth=(--no-auth)
server_args=() bench_args=()

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-2}"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --rates) rates="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    --server-bin) server_bin="$2"; shift 2 ;;
    --bench-bin) bench_bin="$2"; shift 2 ;;
    --server-arg) server_args+=("$2"); shift 2 ;;
    --wait) wait_s="$2"; shift 2 ;;
    --api-keys) auth=(--api-keys "$2"); shift 2 ;;
    -h|--help) usage 0 ;;
    --) shift; bench_args=("$@"); break ;;
    *) echo "serve_sweep.sh: unknown option $1" >&2; usage ;;
  esac
done
[[ -n "$model" ]] || { echo "serve_sweep.sh: --model is required" >&2; usage; }
server_bin="${server_bin:-$build/bin/muse-server}"
bench_bin="${bench_bin:-$build/bin/muse-bench}"
out="${out:-$here/benchmarks/results/$(basename "$model")-$(date -u +%Y%m%dT%H%M%SZ)}"
for b in "$server_bin" "$bench_bin"; do
  [[ -x "$b" ]] || { echo "serve_sweep.sh: $b not built" >&2; exit 1; }
done
mkdir -p "$out"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null && return
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  return 1
}
port="$(free_port)"

server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

server_cmd=("$server_bin" --model "$model" --host 127.0.0.1 --port "$port" "${auth[@]}"
            --drain-grace-seconds 2 "${server_args[@]}")
bench_cmd=("$bench_bin" --port "$port" --rates "$rates" --wait-for-server "$wait_s"
           --result-json "$out/result.json" --html "$out/report.html" "${bench_args[@]}")
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(hostname), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "git: $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "server: ${server_cmd[*]}"
  echo "bench: ${bench_cmd[*]}"
} > "$out/run.txt"

"${server_cmd[@]}" > "$out/server.log" 2>&1 &
server_pid=$!

# Health: the port accepts connections (muse-bench then waits for ModelInfo to answer).
deadline=$((SECONDS + wait_s))
until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "serve_sweep.sh: muse-server exited; log:" >&2; tail -20 "$out/server.log" >&2; exit 1
  fi
  (( SECONDS < deadline )) || { echo "serve_sweep.sh: server not up after ${wait_s}s" >&2; exit 1; }
  sleep 0.2
done

set +e
"${bench_cmd[@]}" | tee "$out/summary.txt"
rc=${PIPESTATUS[0]}
set -e
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/run.txt"
echo "results in $out (summary.txt, result.json, report.html, server.log, run.txt)"
exit "$rc"
