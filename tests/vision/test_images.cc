#include "tests/vision/test_images.h"

#include <algorithm>

namespace muse::testing {

std::vector<uint8_t> TestPixels(int w, int h, int c, uint32_t seed) {
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * c);
  uint32_t s = seed * 2654435761u + 1;
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      for (int k = 0; k < c; ++k) {
        s = s * 1664525u + 1013904223u;
        const int smooth =
            (x * 255 / std::max(1, w - 1) * (k + 1) + y * 255 / std::max(1, h - 1)) / (k + 2);
        px[(static_cast<size_t>(y) * w + x) * c + k] = static_cast<uint8_t>(
            (smooth + static_cast<int>(s >> 27) * 3 + ((x / 3 + y / 2) % 2) * 40) & 255);
      }
    }
  }
  return px;
}

std::string Base64Encode(const std::string& in) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += {k[v >> 18], k[(v >> 12) & 63], k[(v >> 6) & 63], k[v & 63]};
  }
  if (i + 1 == in.size()) {
    const uint32_t v = uint8_t(in[i]) << 16;
    out += {k[v >> 18], k[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    const uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += {k[v >> 18], k[(v >> 12) & 63], k[(v >> 6) & 63], '='};
  }
  return out;
}

}  // namespace muse::testing
