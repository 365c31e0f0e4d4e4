// Test-only encoders and a reference decoder built directly on libpng / libjpeg-turbo, to check
// DecodeImage against every PNG layout and against plain libjpeg (what PIL runs). They exist for
// what stb_image_write (muse::EncodePng / EncodeJpeg, 8-bit baseline only) cannot write: PNG
// bit depths 1/2/4/16, palettes with tRNS, Adam7 interlacing; JPEG progressive, CMYK (Adobe
// marker), 2-component and quality/subsampling exactly as libjpeg applies them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace muse::testing {

struct PngSpec {
  int color_type = 2;            // PNG_COLOR_TYPE_*: 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA
  int bit_depth = 8;             // 1, 2, 4, 8 or 16 (as the PNG spec allows for the color type)
  bool interlaced = false;       // Adam7
  std::vector<uint8_t> palette;  // RGB triples, for color type 3
  std::vector<uint8_t> trns_alpha;  // palette tRNS alphas, for color type 3
};
// samples: [h, w, channels] values in 0 .. 2^bit_depth - 1 (palette: indices); packed here.
std::string EncodePngLib(const std::vector<uint16_t>& samples, int width, int height,
                         const PngSpec& spec);

// components 1 (grey), 3 (RGB), 4 (CMYK, written with libjpeg's Adobe marker); others are
// written as libjpeg's JCS_UNKNOWN.
std::string EncodeJpegLib(const std::vector<uint8_t>& pixels, int width, int height, int components,
                          int quality, bool progressive = false);

// Plain libjpeg with library defaults (as PIL's decoder) to JCS_RGB, or raw JCS_CMYK when
// components == 4. Aborts on error: only for test inputs.
std::vector<uint8_t> ReferenceDecodeJpeg(const std::string& jpeg, int components);

}  // namespace muse::testing
