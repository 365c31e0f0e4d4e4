// Writes a small seed corpus (PNG in every color type incl. palette+tRNS, 16-bit and interlaced;
// JPEG grey/RGB/CMYK, baseline and progressive; a data: URI) for vision_fuzzer into argv[1].
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "src/common/image_encode.h"
#include "tests/vision/test_codecs.h"
#include "tests/vision/test_images.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  std::filesystem::create_directories(argv[1]);
  int n = 0;
  auto write = [&](const std::string& bytes) {
    std::ofstream(std::string(argv[1]) + "/seed-" + std::to_string(n++), std::ios::binary) << bytes;
  };
  using namespace muse::testing;
  using muse::EncodeJpeg;
  using muse::EncodePng;
  for (int c : {1, 2, 3, 4}) write(EncodePng(TestPixels(9 + c, 7, c, c), 9 + c, 7, c));
  write(EncodePng(TestPixels(40, 3, 3, 9), 40, 3, 3));
  write(EncodeJpeg(TestPixels(16, 16, 3, 5), 16, 16, 3, 50));
  write(EncodeJpeg(TestPixels(23, 9, 1, 6), 23, 9, 1, 80));
  auto samples = [](int n, uint32_t max) {
    std::vector<uint16_t> v(n);
    uint32_t s = 1;
    for (auto& x : v)
      x = static_cast<uint16_t>(((s = s * 1664525u + 1013904223u) >> 8) % (max + 1));
    return v;
  };
  PngSpec pal{.color_type = 3, .bit_depth = 4, .interlaced = true};
  for (int i = 0; i < 16 * 3; ++i) pal.palette.push_back(static_cast<uint8_t>(i * 5));
  pal.trns_alpha = {0, 128, 255};
  write(EncodePngLib(samples(11 * 6, 15), 11, 6, pal));
  write(EncodePngLib(samples(9 * 5 * 4, 65535), 9, 5, {.color_type = 6, .bit_depth = 16}));
  write(EncodePngLib(samples(10 * 10, 3), 10, 10,
                     {.color_type = 0, .bit_depth = 2, .interlaced = true}));
  write(EncodePngLib(samples(7 * 3 * 2, 65535), 7, 3, {.color_type = 4, .bit_depth = 16}));
  write(EncodeJpegLib(TestPixels(24, 16, 3, 7), 24, 16, 3, 75, /*progressive=*/true));
  write(EncodeJpegLib(TestPixels(16, 8, 4, 8), 16, 8, 4, 80));
  write(EncodeJpegLib(TestPixels(13, 11, 1, 9), 13, 11, 1, 60, /*progressive=*/true));
  write("data:image/png;base64," + Base64Encode(EncodePng(TestPixels(5, 5, 3, 2), 5, 5, 3)));
  return 0;
}
