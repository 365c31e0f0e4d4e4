// RoPE inverse frequencies and cos/sin tables as HF transformers computes them (float32), with
// "linear" and "llama3" rope_scaling: the one host-side implementation that the CPU kernels' and
// CUDA kernels' callers (models/rope.h adapts a ModelConfig) and the kernel tests share. Plain C++.
#pragma once

#include <cstdint>
#include <vector>

namespace muse::kernels {

struct RopeScalingParams {
  enum class Type { kNone, kLinear, kLlama3 };
  Type type = Type::kNone;
  double factor = 1.0;
  double low_freq_factor = 1.0;                     // llama3 only
  double high_freq_factor = 4.0;                    // llama3 only
  int64_t original_max_position_embeddings = 8192;  // llama3 only
};

// [rot_dim / 2]: inv_freq[i] = 1 / theta^(2i / rot_dim), then scaled (HF
// _compute_default_rope_parameters / _compute_linear_scaling / _compute_llama3_parameters,
// elementwise in float32).
std::vector<float> rope_inv_freq(int rot_dim, double theta, const RopeScalingParams& scaling = {});

// cos/sin tables [max_position, inv_freq.size()] (fp32, row-major): angle = float(pos) * inv_freq
// in fp32, as HF's position.float() @ inv_freq.
void rope_cos_sin_cache(const std::vector<float>& inv_freq, int max_position,
                        std::vector<float>* cos_out, std::vector<float>* sin_out);

}  // namespace muse::kernels
