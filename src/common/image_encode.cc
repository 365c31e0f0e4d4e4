#include "src/common/image_encode.h"

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace muse {
namespace {

// stb_image_write deflates with zlib (its STBIW_ZLIB_COMPRESS hook) so the level is per call:
// stb's own compressor has no stored mode and its level is a process-wide global.
thread_local int t_zlib_level = kPngDefaultLevel;

unsigned char* ZlibCompress(unsigned char* data, int data_len, int* out_len, int /*stb_quality*/) {
  uLongf size = compressBound(static_cast<uLong>(data_len));
  auto* out = static_cast<unsigned char*>(std::malloc(size));  // stb frees it with free()
  if (out == nullptr) return nullptr;
  if (compress2(out, &size, data, static_cast<uLong>(data_len), t_zlib_level) != Z_OK) {
    std::free(out);
    return nullptr;
  }
  *out_len = static_cast<int>(size);
  return out;
}

}  // namespace
}  // namespace muse

#define STBIW_ZLIB_COMPRESS muse::ZlibCompress
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC  // private copy: no stbi_* symbols leave this file
#define STBI_WRITE_NO_STDIO
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"  // the BMP/TGA/HDR writers
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace muse {
namespace {

[[noreturn]] void Die(const char* what, int width, int height, int channels) {
  std::fprintf(stderr, "muse: image encode of %dx%dx%d failed: %s\n", width, height, channels,
               what);
  std::abort();
}

void CheckShape(std::span<const uint8_t> pixels, int width, int height, int channels) {
  if (width < 0 || height < 0 || channels < 1 || channels > 4)
    Die("bad shape", width, height, channels);
  if (pixels.size() != static_cast<size_t>(width) * height * channels) {
    Die("pixel count is not width * height * channels", width, height, channels);
  }
}

void Append(void* ctx, void* data, int size) {
  static_cast<std::string*>(ctx)->append(static_cast<const char*>(data), static_cast<size_t>(size));
}

}  // namespace

std::string EncodePng(std::span<const uint8_t> pixels, int width, int height, int channels,
                      int zlib_level) {
  CheckShape(pixels, width, height, channels);
  if (zlib_level < 0 || zlib_level > 9) Die("zlib level not in 0-9", width, height, channels);
  t_zlib_level = zlib_level;
  std::string out;
  if (width == 0 || height == 0) {
    // stb writes and reads one pixel per row even when a row is empty (a heap overflow of its own
    // 0-byte line buffer, found by ASan in scripts/sanitizers.sh): encode one zero pixel per row
    // (or a 1x1 image) and write the real size into IHDR (width at byte 16, height at 20, the
    // chunk's CRC-32 over bytes 12..28 at 29).
    const std::vector<uint8_t> zeros(static_cast<size_t>(std::max(height, 1) * channels), 0);
    out = EncodePng(zeros, 1, std::max(height, 1), channels, zlib_level);
    auto put32 = [&out](size_t at, uint32_t v) {
      for (int i = 0; i < 4; ++i) out[at + i] = static_cast<char>((v >> (24 - 8 * i)) & 0xff);
    };
    put32(16, static_cast<uint32_t>(width));
    put32(20, static_cast<uint32_t>(height));
    put32(29, static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(out.data() + 12), 17)));
    return out;
  }
  if (stbi_write_png_to_func(Append, &out, width, height, channels, pixels.data(),
                             width * channels) == 0) {
    Die("stb_image_write (out of memory)", width, height, channels);
  }
  return out;
}

std::string EncodeJpeg(std::span<const uint8_t> pixels, int width, int height, int channels,
                       int quality) {
  CheckShape(pixels, width, height, channels);
  if (width == 0 || height == 0) Die("JPEG cannot be zero-sized", width, height, channels);
  std::string out;
  if (stbi_write_jpg_to_func(Append, &out, width, height, channels, pixels.data(), quality) == 0) {
    Die("stb_image_write", width, height, channels);
  }
  return out;
}

}  // namespace muse
