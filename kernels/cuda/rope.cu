#include <algorithm>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/static_switch.h"

namespace muse::kernels {
namespace {

// One CTA per token; threads stride over (head, pair) of q then k.
template <typename T>
__global__ void rope_kernel(RopeParams p) {
  const int token = blockIdx.x;
  const int half = p.rot_dim / 2;
  const int pos = p.positions[token];
  const float* cs = p.cos_cache + static_cast<int64_t>(pos) * half;
  const float* sn = p.sin_cache + static_cast<int64_t>(pos) * half;
  const int nq = p.num_heads * half;
  const int nk = p.k ? p.num_kv_heads * half : 0;
  for (int i = threadIdx.x; i < nq + nk; i += blockDim.x) {
    const bool is_q = i < nq;
    const int j = is_q ? i : i - nq;
    const int head = j / half, r = j % half;
    T* x = is_q ? static_cast<T*>(p.q) + token * p.q_stride + head * p.head_dim
                : static_cast<T*>(p.k) + token * p.k_stride + head * p.head_dim;
    const float c = cs[r], s = sn[r];
    const float x1 = to_float(x[r]), x2 = to_float(x[r + half]);
    x[r] = from_float<T>(x1 * c - x2 * s);
    x[r + half] = from_float<T>(x2 * c + x1 * s);
  }
}

}  // namespace

cudaError_t launch_rope(const RopeParams& in, cudaStream_t stream) {
  RopeParams p = in;
  if (p.num_tokens == 0) return cudaSuccess;
  if (p.rot_dim == 0) p.rot_dim = p.head_dim;
  if (p.num_tokens < 0 || p.rot_dim % 2 || p.rot_dim > p.head_dim || p.num_heads <= 0)
    return cudaErrorInvalidValue;
  if (p.q_stride == 0) p.q_stride = static_cast<int64_t>(p.num_heads) * p.head_dim;
  if (p.k_stride == 0) p.k_stride = static_cast<int64_t>(p.num_kv_heads) * p.head_dim;
  return MUSE_DTYPE_SWITCH(p.dtype, T, [&] {
    const int work = (p.num_heads + (p.k ? p.num_kv_heads : 0)) * (p.rot_dim / 2);
    const int threads = std::clamp((work + 31) / 32 * 32, 32, 512);
    MUSE_LAUNCH(p.num_tokens, threads, 0, stream, rope_kernel<T>)(p);
    return cudaGetLastError();
  });
}

}  // namespace muse::kernels
