#!/usr/bin/env bash
# Runs the kernel checks on a GPU machine. Binaries are built elsewhere and copied to .devbuild/:
#   cmake -S . -B build-kernels -G Ninja -DCMAKE_BUILD_TYPE=Release -DMUSE_KERNELS_ONLY=ON
#   cmake --build build-kernels -j2 && mkdir -p .devbuild && cp build-kernels/bin/kernels_{test,bench} .devbuild/
# Usage: OUT=/some/dir scripts/device_kernels.sh   (every step's output goes to $OUT/*.log)
set -u
OUT=${OUT:-/tmp/device_kernels}
BIN=${BIN:-.devbuild}
mkdir -p "$OUT"
export PATH=/usr/local/cuda/bin:$PATH

nvidia-smi 2>&1 | tee "$OUT/nvidia-smi.log"
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem,memory.total,driver_version --format=csv \
  2>&1 | tee -a "$OUT/nvidia-smi.log"

"$BIN/kernels_test" --gtest_output="xml:$OUT/kernels_test.xml" 2>&1 | tee "$OUT/kernels_test.log"
echo "kernels_test rc=${PIPESTATUS[0]}" | tee -a "$OUT/kernels_test.log"

# Sanitizers on a small subset (compute-sanitizer slows kernels ~100x).
SUBSET='Kernels/DecodeTest.OddContextsShuffledBlocks/11:Kernels/PrefillTest.*/7:Kernels/ReshapeAndCacheTest.*/5:Kernels/RmsNormTest.*/1:Kernels/RopeTest.*/23:Kernels/SiluAndMulTest.*/1:Sampling.DeterministicPerRowRegardlessOfBatch:DecodeGqa.*'
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    timeout 240 compute-sanitizer --tool "$tool" --error-exitcode 99 "$BIN/kernels_test" \
      --gtest_filter="$SUBSET" 2>&1 | tail -40 | tee "$OUT/sanitizer_$tool.log"
    echo "compute-sanitizer $tool rc=${PIPESTATUS[0]}" | tee -a "$OUT/sanitizer_$tool.log"
  done
else
  echo "compute-sanitizer not found" | tee "$OUT/sanitizer_memcheck.log"
fi

timeout 240 "$BIN/kernels_bench" 2>&1 | tee "$OUT/kernels_bench.log"
timeout 200 python3 benchmarks/kernels/sdpa_baseline.py 2>&1 | tee "$OUT/sdpa_baseline.log"
