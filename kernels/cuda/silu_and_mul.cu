#include <algorithm>

#include "kernels/cuda/activation.h"
#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/static_switch.h"

namespace muse::kernels {
namespace {

__device__ __forceinline__ float silu(float x) { return x / (1.f + expf(-x)); }

// grid: (num_tokens, ceil(inter / (threads * elems)))
template <typename T, bool kVec>
__global__ void silu_and_mul_kernel(SiluAndMulParams p) {
  const int64_t t = blockIdx.x;
  const T* gate = static_cast<const T*>(p.input) + t * 2 * p.inter;
  const T* up = gate + p.inter;
  T* out = static_cast<T*>(p.out) + t * p.inter;
  if constexpr (kVec) {
    const int i = (blockIdx.y * blockDim.x + threadIdx.x) * 8;
    if (i >= p.inter) return;
    float g[8], u[8];
    chunk8_to_float(load_chunk8(gate + i), g);
    chunk8_to_float(load_chunk8(up + i), u);
#pragma unroll
    for (int j = 0; j < 8; ++j) g[j] = silu(g[j]) * u[j];
    store_float8(out + i, g);
  } else {
    const int i = blockIdx.y * blockDim.x + threadIdx.x;
    if (i >= p.inter) return;
    out[i] = from_float<T>(silu(to_float(gate[i])) * to_float(up[i]));
  }
}

}  // namespace

cudaError_t launch_silu_and_mul(const SiluAndMulParams& p, cudaStream_t stream) {
  if (p.num_tokens == 0) return cudaSuccess;
  if (p.num_tokens < 0 || p.inter <= 0) return cudaErrorInvalidValue;
  return MUSE_DTYPE_SWITCH(p.dtype, T, [&] {
    const bool vec = p.inter % 8 == 0 && is_aligned16(p.out) && is_aligned16(p.input);
    constexpr int kThreads = 256;
    const int elems = vec ? 8 : 1;
    const dim3 grid(p.num_tokens, (p.inter + kThreads * elems - 1) / (kThreads * elems));
    if (vec)
      MUSE_LAUNCH(grid, kThreads, 0, stream, silu_and_mul_kernel<T, true>)(p);
    else
      MUSE_LAUNCH(grid, kThreads, 0, stream, silu_and_mul_kernel<T, false>)(p);
    return cudaGetLastError();
  });
}

}  // namespace muse::kernels
