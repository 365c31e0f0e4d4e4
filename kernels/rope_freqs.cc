#include "kernels/rope_freqs.h"

#include <cmath>

namespace muse::kernels {

std::vector<float> rope_inv_freq(int rot_dim, double theta, const RopeScalingParams& s) {
  std::vector<float> inv;
  for (int i = 0; i < rot_dim; i += 2) {
    // HF: 1.0 / (base ** (arange(0, d, 2).float() / d)), all in float32.
    const float e = static_cast<float>(i) / static_cast<float>(rot_dim);
    inv.push_back(1.0f / std::pow(static_cast<float>(theta), e));
  }
  if (s.type == RopeScalingParams::Type::kLinear) {
    for (auto& f : inv) f = f / static_cast<float>(s.factor);
  } else if (s.type == RopeScalingParams::Type::kLlama3) {
    const float old_len = static_cast<float>(s.original_max_position_embeddings);
    const float factor = static_cast<float>(s.factor);
    const float low = static_cast<float>(s.low_freq_factor);
    const float high = static_cast<float>(s.high_freq_factor);
    const float low_wavelen = old_len / low, high_wavelen = old_len / high;
    for (auto& f : inv) {
      const float wavelen = 2.0f * static_cast<float>(M_PI) / f;
      const float scaled = wavelen > low_wavelen ? f / factor : f;  // low frequencies: / factor
      if (wavelen >= high_wavelen && wavelen <= low_wavelen) {
        // medium band: smooth blend between interpolated and original
        const float smooth = (old_len / wavelen - low) / (high - low);
        f = (1.0f - smooth) * scaled / factor + smooth * scaled;
      } else {
        f = scaled;
      }
    }
  }
  return inv;
}

void rope_cos_sin_cache(const std::vector<float>& inv_freq, int max_position,
                        std::vector<float>* cos_out, std::vector<float>* sin_out) {
  const size_t half = inv_freq.size();
  cos_out->resize(static_cast<size_t>(max_position) * half);
  sin_out->resize(static_cast<size_t>(max_position) * half);
  for (int pos = 0; pos < max_position; ++pos) {
    for (size_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(pos) * inv_freq[i];
      (*cos_out)[pos * half + i] = std::cos(angle);
      (*sin_out)[pos * half + i] = std::sin(angle);
    }
  }
}

}  // namespace muse::kernels
