// Image bytes -> RGB pixels: PNG/JPEG decoding (stb_image) with size limits checked from the
// header before any pixel is decoded, plus base64 and data: URI parsing. Plain C++, no libtorch.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "src/common/status.h"

namespace muse::vision {

// 8-bit RGB, row-major [height, width, 3].
struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;
};

struct DecodeLimits {
  int64_t max_bytes = 20ll << 20;       // encoded size
  int64_t max_pixels = 4096ll * 4096;   // width * height, checked from the header
};

// Decodes a PNG or JPEG held in memory. Grey and grey+alpha become RGB by replication, RGBA drops
// alpha (as PIL's convert("RGB")), 16-bit PNG channels keep their high byte. InvalidArgument with
// a precise message for empty, oversized, unknown-format, zero-sized, corrupt or truncated input.
absl::StatusOr<Image> DecodeImage(std::string_view bytes, const DecodeLimits& limits = {});

// Standard base64 (RFC 4648 alphabet, '=' padding optional). Errors name the offset.
absl::StatusOr<std::string> Base64Decode(std::string_view text);

bool IsDataUri(std::string_view s);  // starts with "data:" (case-insensitive)

struct DataUri {
  std::string media_type;  // lower-cased, e.g. "image/png"
  std::string bytes;       // decoded payload
};
// Parses "data:image/png;base64,<payload>" (image/png, image/jpeg or image/jpg). The decoded size
// is checked against max_bytes before decoding.
absl::StatusOr<DataUri> ParseDataUri(std::string_view uri, int64_t max_bytes);

}  // namespace muse::vision
