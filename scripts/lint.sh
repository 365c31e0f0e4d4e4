#!/usr/bin/env bash
# Style gate. Always: clang-format --dry-run -Werror over every tracked C++/CUDA file, and the
# layering check (scripts/check_layers.sh). Then clang-tidy (.clang-tidy: bugprone-*,
# performance-*, a few readability-*) over the C++ files changed since BASE, two at a time, within
# a time budget (files past the budget are listed, not silently passed).
# usage: scripts/lint.sh [--base REV (default HEAD~1)] [--budget SECONDS (default 270)]
#                        [--format-only] [--build-dir DIR (default build, needs compile_commands.json)]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BASE="HEAD~1"; BUDGET=270; FORMAT_ONLY=0; BUILD_DIR="build"
while [ $# -gt 0 ]; do
  case "$1" in
    --base) BASE="$2"; shift 2 ;;
    --base=*) BASE="${1#*=}"; shift ;;
    --budget) BUDGET="$2"; shift 2 ;;
    --budget=*) BUDGET="${1#*=}"; shift ;;
    --build-dir) BUILD_DIR="$2"; shift 2 ;;
    --build-dir=*) BUILD_DIR="${1#*=}"; shift ;;
    --format-only) FORMAT_ONLY=1; shift ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "lint.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
CF=$(command -v clang-format-14 || command -v clang-format || true)
[ -n "$CF" ] || { echo "lint.sh: clang-format not found (apt-get install clang-format-14)" >&2; exit 1; }
status=0

# 1. Formatting: every tracked source file (generated unicode tables excluded).
mapfile -t files < <(git ls-files '*.h' '*.cc' '*.cu' '*.cuh' | grep -v '\.inc$')
if ! "$CF" --dry-run -Werror "${files[@]}" 2>/tmp/muse_format.log; then
  grep -E '^[^ ].*: (error|warning):' /tmp/muse_format.log | cut -d: -f1 | sort -u |
    sed 's/^/clang-format: needs formatting: /' >&2
  echo "lint.sh: run '$CF -i <files>' on the files above" >&2
  status=1
else
  echo "clang-format: ${#files[@]} files clean"
fi

# 2. Layers.
bash scripts/check_layers.sh || status=1
[ "$FORMAT_ONLY" = 1 ] && exit $status

# 3. clang-tidy over changed C++ sources (headers are checked through them).
CT=$(command -v clang-tidy-14 || command -v clang-tidy || true)
[ -n "$CT" ] || { echo "lint.sh: clang-tidy not found (apt-get install clang-tidy-14)" >&2; exit 1; }
[ -f "$BUILD_DIR/compile_commands.json" ] ||
  { echo "lint.sh: $BUILD_DIR/compile_commands.json missing (configure the build first)" >&2; exit 1; }
if ! git rev-parse --verify -q "$BASE^{commit}" >/dev/null; then
  echo "clang-tidy: $BASE is not in this clone (shallow?): nothing to compare against, skipped"
  exit $status
fi
mapfile -t changed < <(git diff --name-only --diff-filter=AM "$BASE" -- '*.cc' |
                         grep -E '^(src|models|kernels|tools)/' || true)
echo "clang-tidy: ${#changed[@]} changed file(s) since $BASE, budget ${BUDGET} s"
deadline=$((SECONDS + BUDGET)); skipped=(); out=$(mktemp -d)
i=0
for f in "${changed[@]}"; do
  if [ "$SECONDS" -ge "$deadline" ]; then skipped+=("$f"); continue; fi
  # libtorch 1.13's ATen headers (ATen.h, Functions.h, ops/*) name members of
  # std::vector<c10::IValue> while IValue is still incomplete. GCC builds that as C++20; clang 14
  # instantiates the C++20 constexpr vector members eagerly (llvm/llvm-project#59966) and the TU
  # does not parse (11 clang-diagnostic-errors in ivalue_inl.h / List.h). Such TUs are analysed as
  # gnu++17 instead; they compile as 17 too (checked: llava_vision.cc, llama_aten_model.cc,
  # cpu_model_runner.cc).
  std_arg=()
  if grep -qE '^#include <(ATen/(ATen|Functions)\.h|ATen/ops/|torch/)' "$f"; then
    std_arg=(--extra-arg=-std=gnu++17)
  fi
  echo "$f" >"$out/$i.name"
  ( "$CT" -p "$BUILD_DIR" --quiet "${std_arg[@]}" "$f" >"$out/$i.log" 2>/dev/null
    echo $? >"$out/$i.rc" ) &
  i=$((i + 1))
  while [ "$(jobs -rp | wc -l)" -ge 2 ]; do sleep 0.2; done
done
wait
warnings=$(cat "$out"/*.log 2>/dev/null | grep -cE ': (warning|error):' || true)
cat "$out"/*.log 2>/dev/null | grep -A3 -E ': (warning|error):' || true
# A run that failed without a finding (crash, unparsable file) must not pass silently.
crashed=()
for rc in "$out"/*.rc; do
  [ -e "$rc" ] || continue
  [ "$(cat "$rc")" = 0 ] || crashed+=("$(cat "${rc%.rc}.name")")
done
rm -rf "$out"
if [ "${#crashed[@]}" -gt 0 ]; then
  echo "clang-tidy: failed to analyse: ${crashed[*]}" >&2
  status=1
fi
if [ "${#skipped[@]}" -gt 0 ]; then
  echo "clang-tidy: budget spent, not checked: ${skipped[*]}" >&2
fi
if [ "$warnings" -gt 0 ]; then
  echo "clang-tidy: $warnings finding(s)" >&2
  status=1
else
  echo "clang-tidy: clean"
fi
exit $status
