// Internal to muse_vision: the per-format decoders behind DecodeImage (image.h). Each reads the
// header first, checks DecodeLimits, and only then allocates and decodes; every library error is
// InvalidArgument carrying the library's own message. Not for use outside src/vision.
#pragma once

#include <cstddef>
#include <cstdint>

#include "src/common/status.h"
#include "src/vision/image.h"

namespace muse::vision::internal {

// libjpeg-turbo (the library PIL links), ISLOW IDCT + fancy upsampling as PIL: identical pixels.
absl::StatusOr<Image> DecodeJpeg(const uint8_t* data, size_t size, const DecodeLimits& limits);
// libpng, with the transforms that reproduce PIL's convert("RGB").
absl::StatusOr<Image> DecodePng(const uint8_t* data, size_t size, const DecodeLimits& limits);

// Shared limit check on header dimensions, each in [0, 2^32) (also names zero-sized images).
absl::Status CheckDimensions(const char* format, int64_t width, int64_t height,
                             const DecodeLimits& limits);

}  // namespace muse::vision::internal
