// PNG and JPEG encoding of generated 8-bit pixels (test fixtures, muse-bench image payloads): the
// project's one image writer, stb_image_write. Decoding untrusted images is src/vision's job.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace muse {

// zlib level for EncodePng: 0 stores the rows uncompressed (fast; the file is as large as the
// pixels, which size-limit tests and benchmark payloads rely on), 9 is the smallest.
inline constexpr int kPngStored = 0;
inline constexpr int kPngDefaultLevel = 6;

// `pixels`: [height, width, channels] row-major, channels 1 (grey), 2 (grey+alpha), 3 (RGB) or
// 4 (RGBA). Filters are stb's per-row choice; the deflate stream is zlib's at `zlib_level`.
// Width or height 0 writes a (invalid) zero-sized PNG, for decoder tests. Aborts when pixels.size()
// is not width * height * channels or channels is not 1-4: callers pass images they generated.
std::string EncodePng(std::span<const uint8_t> pixels, int width, int height, int channels,
                      int zlib_level = kPngDefaultLevel);

// Baseline JPEG (stb: 4:2:0 chroma up to quality 90, 4:4:4 above); channels 1-4 (alpha ignored),
// quality 1-100. Width and height must be > 0.
std::string EncodeJpeg(std::span<const uint8_t> pixels, int width, int height, int channels,
                       int quality = 90);

}  // namespace muse
