#include <cmath>

#include "rope.h"

namespace muse::kernels {

std::vector<float> rope_inv_freq(int rot_dim, double theta, const Llama3RopeScaling* llama3) {
  const int half = rot_dim / 2;
  std::vector<float> inv(half);
  for (int i = 0; i < half; ++i) {
    // HF computes this in fp32: 1 / base ** (arange(0, dim, 2).float() / dim).
    const float expo = static_cast<float>(2 * i) / static_cast<float>(rot_dim);
    inv[i] = static_cast<float>(1.0 / std::pow(theta, static_cast<double>(expo)));
  }
  if (!llama3) return inv;
  const double old_len = llama3->original_max_position_embeddings;
  const double low_wavelen = old_len / llama3->low_freq_factor;
  const double high_wavelen = old_len / llama3->high_freq_factor;
  for (int i = 0; i < half; ++i) {
    const double f = inv[i];
    const double wavelen = 2.0 * M_PI / f;
    double out = f;
    if (wavelen > low_wavelen) {
      out = f / llama3->factor;  // low frequencies: fully interpolated
    } else if (wavelen >= high_wavelen) {
      // medium band: smooth blend between interpolated and original
      const double smooth = (old_len / wavelen - llama3->low_freq_factor) /
                            (llama3->high_freq_factor - llama3->low_freq_factor);
      out = (1.0 - smooth) * f / llama3->factor + smooth * f;
    }
    inv[i] = static_cast<float>(out);
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
      // fp32 product as HF does (position.float() @ inv_freq), then cos/sin.
      const float angle = static_cast<float>(pos) * inv_freq[i];
      (*cos_out)[pos * half + i] = std::cos(angle);
      (*sin_out)[pos * half + i] = std::sin(angle);
    }
  }
}

}  // namespace muse::kernels
