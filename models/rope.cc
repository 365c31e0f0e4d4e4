#include "models/rope.h"

#include <cmath>

namespace muse::models {

std::vector<float> RopeInvFreq(const ModelConfig& c) {
  const int64_t d = c.head_dim;
  std::vector<float> inv;
  for (int64_t i = 0; i < d; i += 2) {
    // HF: 1.0 / (base ** (arange(0, d, 2).float() / d)), all in float32.
    const float e = static_cast<float>(i) / static_cast<float>(d);
    inv.push_back(1.0f / std::pow(static_cast<float>(c.rope_theta), e));
  }
  const auto& rs = c.rope_scaling;
  if (rs.type == "linear") {
    for (auto& f : inv) f = f / static_cast<float>(rs.factor);
  } else if (rs.type == "llama3") {
    // transformers _compute_llama3_parameters, elementwise in float32.
    const float old_len = static_cast<float>(rs.original_max_position_embeddings);
    const float factor = static_cast<float>(rs.factor);
    const float low = static_cast<float>(rs.low_freq_factor);
    const float high = static_cast<float>(rs.high_freq_factor);
    const float low_wavelen = old_len / low, high_wavelen = old_len / high;
    for (auto& f : inv) {
      const float wavelen = 2.0f * static_cast<float>(M_PI) / f;
      const float scaled = wavelen > low_wavelen ? f / factor : f;
      if (wavelen >= high_wavelen && wavelen <= low_wavelen) {
        const float smooth = (old_len / wavelen - low) / (high - low);
        f = (1.0f - smooth) * scaled / factor + smooth * scaled;
      } else {
        f = scaled;
      }
    }
  }
  return inv;
}

}  // namespace muse::models
