// Writes a small seed corpus (PNG in every channel layout, JPEG grey/RGB, a data: URI) for
// vision_fuzzer into the directory given as argv[1].
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

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
  for (int c : {1, 2, 3, 4}) write(EncodePng(TestPixels(9 + c, 7, c, c), 9 + c, 7, c));
  write(EncodePng(TestPixels(40, 3, 3, 9), 40, 3, 3));
  write(EncodeJpeg(TestPixels(16, 16, 3, 5), 16, 16, 3, 50));
  write(EncodeJpeg(TestPixels(23, 9, 1, 6), 23, 9, 1, 80));
  write("data:image/png;base64," + Base64Encode(EncodePng(TestPixels(5, 5, 3, 2), 5, 5, 3)));
  return 0;
}
