#include "kernels/cuda/cache.h"
#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/static_switch.h"

namespace muse::kernels {
namespace {

// One CTA per token; each thread moves kVec elements of K and of V.
template <typename T, int kVec>
__global__ void reshape_and_cache_kernel(ReshapeAndCacheParams p) {
  const int token = blockIdx.x;
  const int64_t slot = p.slot_mapping[token];
  if (slot < 0) return;
  const int row = p.num_kv_heads * p.head_dim;
  const T* k = static_cast<const T*>(p.key) + token * p.key_stride;
  const T* v = static_cast<const T*>(p.value) + token * p.value_stride;
  T* kc = static_cast<T*>(p.k_cache) + slot * row;  // slot = block * 16 + offset: row-major
  T* vc = static_cast<T*>(p.v_cache) + slot * row;
  if constexpr (kVec > 1) {
    for (int i = threadIdx.x * kVec; i < row; i += blockDim.x * kVec) {
      store16(kc + i, load16(k + i));
      store16(vc + i, load16(v + i));
    }
  } else {
    for (int i = threadIdx.x; i < row; i += blockDim.x) {
      kc[i] = k[i];
      vc[i] = v[i];
    }
  }
}

}  // namespace

cudaError_t launch_reshape_and_cache(const ReshapeAndCacheParams& in, cudaStream_t stream) {
  ReshapeAndCacheParams p = in;
  if (p.num_tokens == 0) return cudaSuccess;
  if (p.num_tokens < 0 || p.num_kv_heads <= 0 || p.head_dim <= 0) return cudaErrorInvalidValue;
  const int row = p.num_kv_heads * p.head_dim;
  if (p.key_stride == 0) p.key_stride = row;
  if (p.value_stride == 0) p.value_stride = row;
  return MUSE_DTYPE_SWITCH(p.dtype, T, [&] {
    constexpr int kVec = 16 / sizeof(T);
    const bool vec = row % kVec == 0 && p.key_stride % kVec == 0 && p.value_stride % kVec == 0 &&
                     is_aligned16(p.key) && is_aligned16(p.value) && is_aligned16(p.k_cache) &&
                     is_aligned16(p.v_cache);
    const int threads = std::min(256, std::max(32, (row / (vec ? kVec : 1) + 31) / 32 * 32));
    if (vec)
      MUSE_LAUNCH(p.num_tokens, threads, 0, stream, reshape_and_cache_kernel<T, kVec>)(p);
    else
      MUSE_LAUNCH(p.num_tokens, threads, 0, stream, reshape_and_cache_kernel<T, 1>)(p);
    return cudaGetLastError();
  });
}

}  // namespace muse::kernels
