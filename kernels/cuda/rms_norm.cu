#include <algorithm>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/static_switch.h"

namespace muse::kernels {
namespace {

// One CTA per token. Pass 1 forms x (= input [+ residual], rounded to T as the model does) and
// its sum of squares; pass 2 re-reads x (own writes, L1/L2 hot) and normalises.
template <typename T, bool kFused, bool kVec>
__global__ void rms_norm_kernel(RmsNormParams p) {
  __shared__ float scratch[33];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * p.hidden;
  const T* in = static_cast<const T*>(p.input) + base;
  T* res = kFused ? static_cast<T*>(p.residual) + base : nullptr;
  T* out = static_cast<T*>(p.out) + base;
  const T* w = static_cast<const T*>(p.weight);
  float ss = 0.f;
  if constexpr (kVec) {
    for (int i = threadIdx.x * 8; i < p.hidden; i += blockDim.x * 8) {
      float x[8], r[8];
      chunk8_to_float(load_chunk8(in + i), x);
      if constexpr (kFused) {
        chunk8_to_float(load_chunk8(res + i), r);
#pragma unroll
        for (int j = 0; j < 8; ++j) x[j] = to_float(from_float<T>(x[j] + r[j]));
        store_float8(res + i, x);
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) ss += x[j] * x[j];
    }
  } else {
    for (int i = threadIdx.x; i < p.hidden; i += blockDim.x) {
      float x = to_float(in[i]);
      if constexpr (kFused) {
        const T s = from_float<T>(x + to_float(res[i]));
        res[i] = s;
        x = to_float(s);
      }
      ss += x * x;
    }
  }
  const float inv = rsqrtf(block_sum(ss, scratch) / p.hidden + p.eps);
  const T* src = kFused ? res : in;
  if constexpr (kVec) {
    for (int i = threadIdx.x * 8; i < p.hidden; i += blockDim.x * 8) {
      float x[8], g[8];
      chunk8_to_float(load_chunk8(src + i), x);
      chunk8_to_float(load_chunk8(w + i), g);
#pragma unroll
      for (int j = 0; j < 8; ++j) x[j] = x[j] * inv * g[j];
      store_float8(out + i, x);
    }
  } else {
    for (int i = threadIdx.x; i < p.hidden; i += blockDim.x)
      out[i] = from_float<T>(to_float(src[i]) * inv * to_float(w[i]));
  }
}

}  // namespace

cudaError_t launch_rms_norm(const RmsNormParams& p, cudaStream_t stream) {
  if (p.num_tokens == 0) return cudaSuccess;
  if (p.num_tokens < 0 || p.hidden <= 0) return cudaErrorInvalidValue;
  return MUSE_DTYPE_SWITCH(p.dtype, T, [&] {
    const bool vec = p.hidden % 8 == 0 && is_aligned16(p.out) && is_aligned16(p.input) &&
                     is_aligned16(p.weight) && (!p.residual || is_aligned16(p.residual));
    const int per_thread = vec ? 8 : 1;
    const int threads = std::clamp((p.hidden / per_thread + 31) / 32 * 32, 32, 1024);
    const dim3 grid(p.num_tokens);
    if (p.residual) {
      if (vec)
        MUSE_LAUNCH(grid, threads, 0, stream, rms_norm_kernel<T, true, true>)(p);
      else
        MUSE_LAUNCH(grid, threads, 0, stream, rms_norm_kernel<T, true, false>)(p);
    } else {
      if (vec)
        MUSE_LAUNCH(grid, threads, 0, stream, rms_norm_kernel<T, false, true>)(p);
      else
        MUSE_LAUNCH(grid, threads, 0, stream, rms_norm_kernel<T, false, false>)(p);
    }
    return cudaGetLastError();
  });
}

}  // namespace muse::kernels
