// The image entry point the server calls per image: raw PNG/JPEG bytes or a data: URI ->
// decoded, preprocessed pixels and the image digest. Plain C++, no libtorch.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "src/common/status.h"
#include "src/vision/image.h"
#include "src/vision/preprocess.h"

namespace muse::vision {

// SHA-256 over the decoded RGB pixels, their dimensions and the canonical preprocessing config:
// equal digests mean equal pixel_values (so equal encoder outputs for one model).
struct ImageDigest {
  std::array<uint8_t, 32> bytes{};
  // First 8 bytes, little-endian: the engine's ContentSpan::digest / prefix-cache extra key.
  // Never 0 (0 means "no content" there).
  uint64_t key64() const;
  std::string hex() const;
  bool operator==(const ImageDigest&) const = default;
};

ImageDigest ComputeImageDigest(const Image& image, const PreprocessorConfig& config);

// SHA-256 of the concatenation of `parts`, through OpenSSL's EVP interface (its SHA-NI / AVX2
// code: 5.8x the hand-written C++ it replaced, benchmarks/vision/RESULTS-vision.md).
std::array<uint8_t, 32> Sha256(std::initializer_list<std::string_view> parts);

struct PreparedImage {
  int original_width = 0;
  int original_height = 0;
  PixelValues pixels;  // [3, H, W]
  ImageDigest digest;
};

// `input` is either raw encoded bytes or a "data:image/...;base64," URI. Every failure is
// InvalidArgument with a message naming the problem; nothing reads outside `input`.
absl::StatusOr<PreparedImage> PrepareImage(std::string_view input, const PreprocessorConfig& config,
                                           const DecodeLimits& limits = {});

}  // namespace muse::vision
