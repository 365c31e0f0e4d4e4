// Image bytes -> RGB pixels: PNG (libpng) / JPEG (libjpeg-turbo) decoding of untrusted input with
// size limits checked from the header before any pixel buffer is allocated, plus base64 and data:
// URI parsing. Plain C++, no libtorch.
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
  int64_t max_bytes = 20ll << 20;      // encoded size
  int64_t max_pixels = 4096ll * 4096;  // width * height, checked from the header
};

// Decodes a PNG or JPEG held in memory to the pixels PIL's Image.open(...).convert("RGB") gives:
// grey and grey+alpha replicate, alpha and palette tRNS are dropped, JPEG uses libjpeg-turbo with
// PIL's settings (ISLOW IDCT, fancy upsampling; CMYK/YCCK as Adobe-inverted CMYK). One deliberate
// difference: 16-bit PNG samples keep their high byte also for grey (PIL clamps "I;16" to 255).
// InvalidArgument with a precise message (the decoder library's own, for corrupt data) for empty,
// oversized, unknown-format, zero-sized, corrupt or truncated input; truncated JPEGs included.
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
