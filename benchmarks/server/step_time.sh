#!/usr/bin/env bash
# Engine step time with N live gRPC streams. Starts muse-server (--max-num-seqs N, --threads T),
# runs muse-bench with N concurrent streams (rate inf, --ignore-eos, all requests sent at t = 0),
# scrapes /metrics and the server's per-thread CPU time (/proc/PID/task/*/schedstat) every
# --interval seconds, and reports over the window in which all N sequences were running
# (muse_num_requests_running == N, i.e. pure decode steps of N sequences):
#
#   wall_ms_per_step   Δt / Δmuse_engine_steps_total. The engine thread is never idle in that
#                      window, so this is the mean time of one engine iteration (inbox + Step +
#                      the OutputStream hooks it fires). Every build exposes the counter.
#   engine_cpu_ms      CPU time of the engine thread per step. With --threads 1 (the default
#                      here) the runner's forward runs on the engine thread itself, so the engine
#                      thread is the server thread with the most CPU time; this number does not
#                      depend on what else the machine is running, unlike wall time.
#   pump_cpu_ms        CPU per step of the "muse-pump" threads (builds that have them).
#   other_cpu_ms       CPU per step of every other server thread (gRPC, metrics, ...).
#   step_ms_mean/p50/p90  Step() alone from the engine's muse_engine_step_seconds histogram
#                      (builds that have it; "-" otherwise); quantiles interpolate in a bucket.
#   client_tpot        muse-bench mean / median time per output token.
#
#   benchmarks/server/step_time.sh [--build DIR] [--server-bin BIN] [--bench-bin BIN]
#       [--model DIR] [--streams 256] [--input-len 16] [--output-len 200] [--threads 1]
#       [--interval 0.5] [--out DIR] [--server-arg WORD]...
#
# One result line on stdout (key=value); server log, scrapes and the bench JSON go to --out.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$here/build" server_bin="" bench_bin="" model="$here/models/muse-tiny"
streams=256 input_len=16 output_len=200 threads=1 interval=0.5 out="" server_args=()

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-2}"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --server-bin) server_bin="$2"; shift 2 ;;
    --bench-bin) bench_bin="$2"; shift 2 ;;
    --model) model="$2"; shift 2 ;;
    --streams) streams="$2"; shift 2 ;;
    --input-len) input_len="$2"; shift 2 ;;
    --output-len) output_len="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --interval) interval="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --server-arg) server_args+=("$2"); shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "step_time.sh: unknown option $1" >&2; usage ;;
  esac
done
server_bin="${server_bin:-$build/bin/muse-server}"
bench_bin="${bench_bin:-$build/bin/muse-bench}"
for b in "$server_bin" "$bench_bin"; do
  [[ -x "$b" ]] || { echo "step_time.sh: $b not built" >&2; exit 1; }
done
out="${out:-$(mktemp -d /tmp/step_time.XXXXXX)}"
mkdir -p "$out"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port="$(free_port)"
mport="$(free_port)"
while [[ "$mport" == "$port" ]]; do mport="$(free_port)"; done

server_pid="" scrape_pid=""
cleanup() {
  [[ -n "$scrape_pid" ]] && kill "$scrape_pid" 2>/dev/null || true
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$server_bin" --model "$model" --host 127.0.0.1 --port "$port" --metrics-port "$mport" --no-auth \
  --max-num-seqs "$streams" --max-waiting $((streams * 2)) --threads "$threads" --drain-grace-seconds 1 \
  "${server_args[@]}" > "$out/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$mport/health" > /dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { echo "step_time.sh: server died, see $out/server.log" >&2; exit 1; }
  sleep 0.2
done

# Scraper: one line per scrape: time steps running step_sum step_count [le=count ...] | tid:comm:ns ...
(
  while true; do
    t="$(date +%s.%N)"
    threads_now=""
    for d in /proc/"$server_pid"/task/*; do
      read -r ns _ < "$d/schedstat" 2>/dev/null || continue
      comm="$(tr ' ' '_' < "$d/comm" 2>/dev/null)" || continue
      threads_now+=" ${d##*/}:$comm:$ns"
    done
    curl -sf "http://127.0.0.1:$mport/metrics" | awk -v t="$t" -v th="$threads_now" '
      /^muse_engine_steps_total / { steps = $2 }
      /^muse_num_requests_running / { running = $2 }
      /^muse_engine_step_seconds_sum / { ssum = $2 }
      /^muse_engine_step_seconds_count / { scount = $2 }
      /^muse_engine_step_seconds_bucket/ { match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5);
                                           b = b " " le "=" $2 }
      END { if (steps != "") print t, steps, running, (ssum == "" ? "-" : ssum), (scount == "" ? "-" : scount) b " |" th }'
    sleep "$interval"
  done
) > "$out/scrapes.txt" &
scrape_pid=$!

"$bench_bin" --port "$port" --dataset-name random --random-input-len "$input_len" \
  --random-output-len "$output_len" --ignore-eos --num-prompts "$streams" --max-concurrency "$streams" \
  --request-rate inf --seed 0 --no-progress --result-json "$out/bench.json" \
  > "$out/bench.txt" 2> "$out/bench.err" || { echo "step_time.sh: muse-bench failed, see $out/bench.err" >&2; exit 1; }
kill "$scrape_pid" 2>/dev/null || true
wait "$scrape_pid" 2>/dev/null || true
scrape_pid=""

read -r tpot_mean tpot_median failed < <(python3 - "$out/bench.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["runs"][0]["summary"]
print(f'{r["mean_tpot_ms"]:.2f} {r["median_tpot_ms"]:.2f} {r.get("failed", 0)}')
PY
)

python3 - "$out/scrapes.txt" "$streams" "$tpot_mean" "$tpot_median" "$failed" <<'PY'
import sys
path, n = sys.argv[1], float(sys.argv[2])
rows = []
for line in open(path):
    metrics, _, threads = line.partition("|")
    f = metrics.split()
    if len(f) < 5: continue
    buckets = [(float("inf") if k == "+Inf" else float(k), float(v)) for k, v in (x.split("=") for x in f[5:])]
    cpu = {}
    for x in threads.split():
        tid, rest = x.split(":", 1)
        comm, ns = rest.rsplit(":", 1)
        cpu[tid] = (comm, int(ns))
    rows.append((float(f[0]), float(f[1]), float(f[2]), f[3], f[4], buckets, cpu))
full = [r for r in rows if r[2] == n]
if len(full) < 2:
    sys.exit(f"step_time.sh: fewer than 2 scrapes with {int(n)} running sequences; raise --output-len")
a, b = full[0], full[-1]
dt, dsteps = b[0] - a[0], b[1] - a[1]
res = {"streams": int(n), "window_s": f"{dt:.1f}", "steps": int(dsteps),
       "wall_ms_per_step": f"{1000 * dt / dsteps:.2f}"}
# Per-thread CPU over the window (threads present at both ends).
delta = {tid: (comm, b[6][tid][1] - a[6][tid][1]) for tid, (comm, _) in a[6].items() if tid in b[6]}
engine_tid = max(delta, key=lambda t: delta[t][1])
with open(path.replace("scrapes.txt", "threads.txt"), "w") as out:
    for tid, (comm, d) in sorted(delta.items(), key=lambda kv: -kv[1][1]):
        out.write(f"{tid} {comm} {d / 1e6 / dsteps:.3f} ms/step{'  <- engine' if tid == engine_tid else ''}\n")
pump = sum(d for tid, (c, d) in delta.items() if c.startswith("muse-pump"))
other = sum(d for tid, (c, d) in delta.items() if tid != engine_tid and not c.startswith("muse-pump"))
res["engine_cpu_ms"] = f"{delta[engine_tid][1] / 1e6 / dsteps:.2f}"
res["pump_cpu_ms"] = f"{pump / 1e6 / dsteps:.2f}"
res["other_cpu_ms"] = f"{other / 1e6 / dsteps:.2f}"
if a[3] != "-":
    dsum, dcount = float(b[3]) - float(a[3]), float(b[4]) - float(a[4])
    res["step_ms_mean"] = f"{1000 * dsum / dcount:.2f}"
    # Cumulative bucket counts over the window -> quantiles (linear inside a bucket).
    cum = [(le, bv - av) for (le, av), (_, bv) in zip(a[5], b[5])]
    def q(p):
        target, lo, prev = p * cum[-1][1], 0.0, 0.0
        for le, c in cum:
            if c >= target:
                if le == float("inf"): return lo
                return lo + (le - lo) * ((target - prev) / (c - prev) if c > prev else 1.0)
            lo, prev = le, c
        return lo
    res["step_ms_p50"] = f"{1000 * q(0.5):.2f}"
    res["step_ms_p90"] = f"{1000 * q(0.9):.2f}"
else:
    res["step_ms_mean"] = "-"
res["client_tpot_mean_ms"] = sys.argv[3]
res["client_tpot_median_ms"] = sys.argv[4]
res["failed"] = sys.argv[5]
print(" ".join(f"{k}={v}" for k, v in res.items()))
PY
echo "step_time.sh: details in $out" >&2
