// Rotary embedding (neox / HF half-rotation: pairs (i, i + rot_dim/2)) applied in place to q and k.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "dtype.h"

namespace muse::kernels {

struct RopeParams {
  void* q;                  // q: [num_tokens, num_heads, head_dim], row stride q_stride
  void* k;                  // k: [num_tokens, num_kv_heads, head_dim], row stride k_stride (nullable)
  const int32_t* positions; // positions: [num_tokens]
  const float* cos_cache;   // cos_cache: [max_position, rot_dim / 2] fp32
  const float* sin_cache;   // sin_cache: [max_position, rot_dim / 2] fp32
  int num_tokens = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int rot_dim = 0;          // rotated leading dims (0 = head_dim); must be even
  int64_t q_stride = 0;     // elements between tokens (0 = num_heads * head_dim)
  int64_t k_stride = 0;     // elements between tokens (0 = num_kv_heads * head_dim)
  DType dtype = DType::kBFloat16;
};

cudaError_t launch_rope(const RopeParams& p, cudaStream_t stream);

// ---- host helpers (plain C++) ----

// HF rope_scaling {"rope_type": "llama3", ...}.
struct Llama3RopeScaling {
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int original_max_position_embeddings = 8192;
};

// inv_freq[i] = theta^(-2i/rot_dim), i < rot_dim/2, then llama3 scaling when given
// (HF transformers _compute_llama3_parameters).
std::vector<float> rope_inv_freq(int rot_dim, double theta, const Llama3RopeScaling* llama3);

// cos/sin tables [max_position, inv_freq.size()] (fp32, row-major) for upload to the device.
void rope_cos_sin_cache(const std::vector<float>& inv_freq, int max_position,
                        std::vector<float>* cos_out, std::vector<float>* sin_out);

}  // namespace muse::kernels
