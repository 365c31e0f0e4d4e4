#!/usr/bin/env bash
# Stages the GPU test and benchmark binaries built here (CPU machine, nvcc only) into .devbuild/
# for a device machine that has CUDA but none of our Debian libraries: the binaries plus the
# shared libraries they need beyond glibc/libstdc++/CUDA (Abseil, spdlog, fmt) in .devbuild/lib.
# Then: run(carry=[".devbuild"]) "OUT=\$OUT scripts/device_checks.sh"
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/build/bin"; DEST="$ROOT/.devbuild"
cmake --build "$ROOT/build" -j "$(nproc)" --target cuda_kernels_test backend_ops_test cuda_kernels_bench cuda_runner_test cuda_runner_bench \
  device_sampler_parity_test engine_device_sampling_test nccl_communicator_test
rm -rf "$DEST" && mkdir -p "$DEST/lib"
for b in cuda_kernels_test backend_ops_test cuda_kernels_bench cuda_runner_test cuda_runner_bench \
  device_sampler_parity_test engine_device_sampling_test nccl_communicator_test; do
  cp "$BIN/$b" "$DEST/"
  for lib in $(ldd "$BIN/$b" | awk '$3 ~ /^\// {print $3}'); do
    case "$lib" in
      /usr/local/cuda*|*/libc.so*|*/libm.so*|*/libdl.so*|*/librt.so*|*/libpthread.so*|*/libgcc_s.so*|*/libstdc++.so*) ;;
      *) cp -L "$lib" "$DEST/lib/" ;;
    esac
  done
done
du -sh "$DEST"
