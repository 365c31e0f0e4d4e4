// Rotary embedding (neox / HF half-rotation: pairs (i, i + rot_dim/2)) applied in place to q and k.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype.h"
#include "kernels/rope_freqs.h"  // the cos/sin tables this reads

namespace muse::kernels {

struct RopeParams {
  void* q;  // q: [num_tokens, num_heads, head_dim], row stride q_stride
  void* k;  // k: [num_tokens, num_kv_heads, head_dim], row stride k_stride (nullable)
  const int32_t* positions;  // positions: [num_tokens]
  const float* cos_cache;    // cos_cache: [max_position, rot_dim / 2] fp32
  const float* sin_cache;    // sin_cache: [max_position, rot_dim / 2] fp32
  int num_tokens = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int rot_dim = 0;       // rotated leading dims (0 = head_dim); must be even
  int64_t q_stride = 0;  // elements between tokens (0 = num_heads * head_dim)
  int64_t k_stride = 0;  // elements between tokens (0 = num_kv_heads * head_dim)
  DType dtype = DType::kBFloat16;
};

cudaError_t launch_rope(const RopeParams& p, cudaStream_t stream);

}  // namespace muse::kernels
