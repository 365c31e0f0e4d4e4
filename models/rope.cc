#include "models/rope.h"

#include "kernels/rope_freqs.h"

namespace muse::models {

std::vector<float> RopeInvFreq(const ModelConfig& c) {
  const auto& rs = c.rope_scaling;
  kernels::RopeScalingParams p;
  if (rs.type == "linear") p.type = kernels::RopeScalingParams::Type::kLinear;
  if (rs.type == "llama3") p.type = kernels::RopeScalingParams::Type::kLlama3;
  p.factor = rs.factor;
  p.low_freq_factor = rs.low_freq_factor;
  p.high_freq_factor = rs.high_freq_factor;
  p.original_max_position_embeddings = rs.original_max_position_embeddings;
  return kernels::rope_inv_freq(static_cast<int>(c.head_dim), c.rope_theta, p);
}

}  // namespace muse::models
