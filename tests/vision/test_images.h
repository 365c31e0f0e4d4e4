// Test images: deterministic RGB/grey/RGBA pixels and base64. Encode them with src/common's
// EncodePng / EncodeJpeg (stb_image_write); tests/vision/test_codecs has libpng/libjpeg encoders
// for the layouts stb cannot write.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace muse::testing {

// Deterministic pixels with gradients and noise: [h, w, channels].
std::vector<uint8_t> TestPixels(int width, int height, int channels, uint32_t seed);
std::string Base64Encode(const std::string& bytes);

}  // namespace muse::testing
