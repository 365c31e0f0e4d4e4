#!/usr/bin/env bash
# Long libFuzzer runs (issue 15): scripts/fuzz.sh [SECONDS] [TARGET...]
#   SECONDS  per target (default 600); TARGET: e.g. jinja_fuzzer (default: every fuzzer built).
# Runs each target's generated runner (build/fuzz/NAME.sh: seeds + fuzz_regressions replayed)
# with one job per core for SECONDS, then prints executions and crashes per target. Crash inputs
# land in $MUSE_FUZZ_OUT/NAME/ (crash-*, leak-*, timeout-*, oom-*); copy a fixed one into the
# target's fuzz_regressions/ dir. Env: MUSE_BUILD_DIR (default build-fuzz, else build),
# MUSE_FUZZ_OUT (default /tmp/muse-fuzz), MUSE_FUZZ_JOBS (default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
[ $# -gt 0 ] && shift
build=${MUSE_BUILD_DIR:-}
if [ -z "$build" ]; then
  build=build-fuzz
  [ -d "$build/fuzz" ] || build=build
fi
build=$(cd "$build" && pwd)
out=${MUSE_FUZZ_OUT:-/tmp/muse-fuzz}
jobs=${MUSE_FUZZ_JOBS:-$(nproc)}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for r in "$build"/fuzz/*_fuzzer.sh; do targets+=("$(basename "$r" .sh)"); done
fi
[ ${#targets[@]} -gt 0 ] || { echo "no fuzzers in $build/fuzz (configure with clang-14 present)" >&2; exit 1; }

printf '%-26s %8s %14s %8s\n' target seconds executions crashes > "$out.summary" 2>/dev/null || {
  mkdir -p "$(dirname "$out")"; : > "$out.summary"; }
status=0
for t in "${targets[@]}"; do
  runner="$build/fuzz/$t.sh"
  [ -x "$runner" ] || { echo "no runner $runner (build target $t first)" >&2; status=1; continue; }
  [ -x "$build/bin/$t" ] || { echo "$t not built: ninja -C $build $t" >&2; status=1; continue; }
  work="$out/$t"
  rm -rf "$work" && mkdir -p "$work"
  echo "== $t: $secs s, $jobs jobs" >&2
  # -jobs=N -workers=N: N independent fuzzing processes sharing the corpus dir, each writing
  # fuzz-<i>.log with its final stats.
  set +e
  MUSE_FUZZ_WORKDIR="$work" "$runner" "$secs" -jobs="$jobs" -workers="$jobs" \
    -print_final_stats=1 > "$work/run.log" 2>&1
  set -e
  execs=0
  for log in "$work"/fuzz-*.log "$work/run.log"; do
    [ -f "$log" ] || continue
    n=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    execs=$((execs + ${n:-0}))
  done
  crashes=$(find "$work" -maxdepth 1 \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
    -o -name 'oom-*' \) | wc -l)
  [ "$crashes" -eq 0 ] || status=1
  printf '%-26s %8s %14s %8s\n' "$t" "$secs" "$execs" "$crashes" | tee -a "$out.summary"
done
echo "(summary: $out.summary; artifacts and logs: $out/<target>/)" >&2
exit $status
