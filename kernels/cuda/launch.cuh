// Kernel-launch and dynamic-shared-memory hooks, so that the same .cu source builds both with nvcc
// and with the CPU CUDA emulator (tests/cuda_emu: g++ with MUSE_CUDA_EMULATOR defined), which has
// no <<<>>> syntax and no `extern __shared__`.
//
//   MUSE_LAUNCH(grid, block, smem, stream, kernel<T, D>)(args...);
//   MUSE_DYNAMIC_SHARED(float, s_w);  // s_w: this CTA's dynamic shared memory, 16-byte aligned
//
// The kernel goes last, as the variadic argument, because template arguments contain commas that
// the preprocessor would otherwise split (commas inside parentheses, e.g. dim3(x, y), are fine).
#pragma once

#ifdef MUSE_CUDA_EMULATOR
#define MUSE_LAUNCH(grid, block, smem, stream, ...) \
  ::muse::cuda_emu::Launch(#__VA_ARGS__, __VA_ARGS__, dim3(grid), dim3(block), smem, stream)
#define MUSE_DYNAMIC_SHARED(type, name) \
  type* name = static_cast<type*>(::muse::cuda_emu::dynamic_shared_memory())
#else
#define MUSE_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>
#define MUSE_DYNAMIC_SHARED(type, name) extern __shared__ __align__(16) type name[]
#endif
