#include "src/vision/image.h"

#include <cstring>

#include "src/vision/image_decoders.h"

namespace muse::vision {
namespace {

constexpr uint8_t kPngMagic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

const char* SniffFormat(std::string_view b) {
  if (b.size() >= 8 && std::memcmp(b.data(), kPngMagic, 8) == 0) return "PNG";
  if (b.size() >= 3 && static_cast<uint8_t>(b[0]) == 0xff && static_cast<uint8_t>(b[1]) == 0xd8 &&
      static_cast<uint8_t>(b[2]) == 0xff) {
    return "JPEG";
  }
  return nullptr;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

namespace internal {

absl::Status CheckDimensions(const char* format, int64_t width, int64_t height,
                             const DecodeLimits& limits) {
  if (width <= 0 || height <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("image: zero-sized ", format, " (", width, "x", height, ")"));
  }
  // Header dimensions are below 2^32 (PNG's 32-bit fields), so the product fits in uint64.
  const uint64_t pixels = static_cast<uint64_t>(width) * static_cast<uint64_t>(height);
  if (limits.max_pixels < 0 || pixels > static_cast<uint64_t>(limits.max_pixels)) {
    return absl::InvalidArgumentError(absl::StrCat("image: ", width, "x", height, " = ", pixels,
                                                   " pixels exceeds the limit of ",
                                                   limits.max_pixels, " pixels"));
  }
  return absl::OkStatus();
}

}  // namespace internal

absl::StatusOr<Image> DecodeImage(std::string_view bytes, const DecodeLimits& limits) {
  if (bytes.empty()) return absl::InvalidArgumentError("image: empty image data (0 bytes)");
  if (static_cast<int64_t>(bytes.size()) > limits.max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image: ", bytes.size(), " bytes exceeds the limit of ", limits.max_bytes, " bytes"));
  }
  const char* format = SniffFormat(bytes);
  if (format == nullptr) {
    return absl::InvalidArgumentError(
        "image: unsupported or unrecognised format (expected PNG or JPEG signature)");
  }
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  return format[0] == 'P' ? internal::DecodePng(data, bytes.size(), limits)
                          : internal::DecodeJpeg(data, bytes.size(), limits);
}

absl::StatusOr<std::string> Base64Decode(std::string_view text) {
  size_t n = text.size();
  size_t pad = 0;
  while (n > 0 && text[n - 1] == '=' && pad < 2) {
    --n;
    ++pad;
  }
  if (pad > 0 && (n + pad) % 4 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("base64: padded length ", text.size(), " is not a multiple of 4"));
  }
  if (n % 4 == 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("base64: truncated input (", n, " data characters leave a dangling 6 bits)"));
  }
  std::string out;
  out.reserve(n / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; ++i) {
    const int v = Base64Value(text[i]);
    if (v < 0) {
      const unsigned char c = static_cast<unsigned char>(text[i]);
      return absl::InvalidArgumentError(absl::StrCat("base64: invalid character ",
                                                     (c >= 0x20 && c < 0x7f)
                                                         ? absl::StrCat("'", std::string(1, c), "'")
                                                         : absl::StrCat("0x", absl::Hex(c)),
                                                     " at offset ", i));
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

bool IsDataUri(std::string_view s) { return s.size() >= 5 && Lower(s.substr(0, 5)) == "data:"; }

absl::StatusOr<DataUri> ParseDataUri(std::string_view uri, int64_t max_bytes) {
  if (!IsDataUri(uri)) return absl::InvalidArgumentError("image_url: not a data: URI");
  const size_t comma = uri.find(',');
  if (comma == std::string_view::npos) {
    return absl::InvalidArgumentError("image_url: data URI has no ',' before the payload");
  }
  const std::string header = Lower(uri.substr(5, comma - 5));
  const size_t semi = header.find(';');
  DataUri out;
  out.media_type = header.substr(0, semi);
  if (out.media_type != "image/png" && out.media_type != "image/jpeg" &&
      out.media_type != "image/jpg") {
    return absl::InvalidArgumentError(absl::StrCat("image_url: unsupported media type '",
                                                   out.media_type,
                                                   "' (supported: image/png, image/jpeg)"));
  }
  if (semi == std::string::npos || header.find(";base64", semi) == std::string::npos) {
    return absl::InvalidArgumentError("image_url: data URI must be base64-encoded (';base64,')");
  }
  const std::string_view payload = uri.substr(comma + 1);
  if (static_cast<int64_t>(payload.size() / 4) * 3 > max_bytes + 3) {
    return absl::InvalidArgumentError(absl::StrCat("image_url: base64 payload of ", payload.size(),
                                                   " characters decodes to more than the limit of ",
                                                   max_bytes, " bytes"));
  }
  auto bytes = Base64Decode(payload);
  if (!bytes.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("image_url: ", bytes.status().message()));
  }
  out.bytes = std::move(*bytes);
  return out;
}

}  // namespace muse::vision
