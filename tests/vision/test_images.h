// Test images: deterministic RGB/grey/RGBA pixels encoded as PNG or JPEG with stb_image_write.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace muse::testing {

// Deterministic pixels with gradients and noise: [h, w, channels].
std::vector<uint8_t> TestPixels(int width, int height, int channels, uint32_t seed);
std::string EncodePng(const std::vector<uint8_t>& pixels, int width, int height, int channels);
std::string EncodeJpeg(const std::vector<uint8_t>& pixels, int width, int height, int channels,
                       int quality = 90);
std::string Base64Encode(const std::string& bytes);

}  // namespace muse::testing
