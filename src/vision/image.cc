#include "src/vision/image.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "src/vision/stb_decode.h"

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

// stb_image 2.27 (Debian 12) does not bound the symbol count of a JPEG Huffman table and writes
// past its 257-entry size list when the 16 counts sum above 256 (fixed upstream in 2.28; found by
// vision_fuzzer). Walk the markers and refuse such tables before stb sees them.
absl::Status CheckJpegHuffmanTables(const uint8_t* d, size_t n) {
  size_t i = 2;  // after SOI
  while (i + 1 < n) {
    if (d[i] != 0xff) {  // stb resynchronises by skipping bytes up to the next 0xff; so do we
      ++i;
      continue;
    }
    while (i < n && d[i] == 0xff) ++i;          // fill bytes
    if (i >= n) return absl::OkStatus();
    const uint8_t m = d[i++];
    if (m == 0xd9) return absl::OkStatus();                            // EOI
    if (m == 0x01 || m == 0xd8 || (m >= 0xd0 && m <= 0xd7)) continue;  // no payload
    if (i + 2 > n) return absl::OkStatus();
    const size_t len = (size_t{d[i]} << 8) | d[i + 1];
    if (len < 2) return absl::OkStatus();
    const size_t end = std::min(n, i + len);
    if (m == 0xc4) {  // DHT: one or more (class/id, 16 counts, symbols)
      size_t p = i + 2;
      while (p + 17 <= end) {
        size_t total = 0;
        for (int k = 1; k <= 16; ++k) total += d[p + k];
        if (total > 256) {
          return absl::InvalidArgumentError(absl::StrCat(
              "image: corrupt JPEG (Huffman table with ", total, " symbols, at most 256 allowed)"));
        }
        p += 17 + total;
      }
    }
    i += len;
    if (m == 0xda) {  // SOS: skip entropy-coded data up to the next real marker
      while (i + 1 < n && !(d[i] == 0xff && d[i + 1] != 0x00 && !(d[i + 1] >= 0xd0 && d[i + 1] <= 0xd7))) ++i;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Image> DecodeImage(std::string_view bytes, const DecodeLimits& limits) {
  if (bytes.empty()) return absl::InvalidArgumentError("image: empty image data (0 bytes)");
  if (static_cast<int64_t>(bytes.size()) > limits.max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("image: ", bytes.size(),
                                                   " bytes exceeds the limit of ",
                                                   limits.max_bytes, " bytes"));
  }
  // stb takes an int length; max_bytes above 2 GiB is not meaningful.
  if (bytes.size() > static_cast<size_t>(INT32_MAX)) {
    return absl::InvalidArgumentError("image: larger than 2 GiB");
  }
  const char* format = SniffFormat(bytes);
  if (format == nullptr) {
    return absl::InvalidArgumentError(
        "image: unsupported or unrecognised format (expected PNG or JPEG signature)");
  }
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  const int len = static_cast<int>(bytes.size());
  int w = 0, h = 0, comp = 0;
  auto too_many = [&](int64_t pw, int64_t ph) {
    return absl::InvalidArgumentError(absl::StrCat("image: ", pw, "x", ph, " = ", pw * ph,
                                                   " pixels exceeds the limit of ",
                                                   limits.max_pixels, " pixels"));
  };
  if (!stb::Info(data, len, &w, &h, &comp)) {
    // stb refuses headers past its own 2^30-byte cap with a generic reason; name the size.
    if (format[0] == 'P' && bytes.size() >= 24 && std::memcmp(data + 12, "IHDR", 4) == 0) {
      auto be32 = [&](int off) {
        return (int64_t{data[off]} << 24) | (int64_t{data[off + 1]} << 16) |
               (int64_t{data[off + 2]} << 8) | int64_t{data[off + 3]};
      };
      if (be32(16) * be32(20) > limits.max_pixels) return too_many(be32(16), be32(20));
    }
    return absl::InvalidArgumentError(absl::StrCat("image: invalid ", format, " header (",
                                                   stb::FailureReason(), ")"));
  }
  if (w <= 0 || h <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("image: zero-sized ", format, " (", w, "x", h, ")"));
  }
  if (static_cast<int64_t>(w) * h > limits.max_pixels) return too_many(w, h);
  if (format[0] == 'J') RETURN_IF_ERROR(CheckJpegHuffmanTables(data, bytes.size()));
  int dw = 0, dh = 0;
  std::unique_ptr<uint8_t, void (*)(void*)> pixels(stb::LoadRgb(data, len, &dw, &dh), &stb::Free);
  if (!pixels) {
    return absl::InvalidArgumentError(absl::StrCat("image: corrupt or truncated ", format, " (",
                                                   stb::FailureReason(), ")"));
  }
  if (dw != w || dh != h) {  // header and body disagree: refuse rather than trust either
    return absl::InvalidArgumentError(absl::StrCat("image: ", format, " header says ", w, "x", h,
                                                   " but decoding gave ", dw, "x", dh));
  }
  Image img;
  img.width = w;
  img.height = h;
  img.rgb.assign(pixels.get(), pixels.get() + static_cast<size_t>(w) * h * 3);
  return img;
}

absl::StatusOr<std::string> Base64Decode(std::string_view text) {
  size_t n = text.size();
  size_t pad = 0;
  while (n > 0 && text[n - 1] == '=' && pad < 2) {
    --n;
    ++pad;
  }
  if (pad > 0 && (n + pad) % 4 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("base64: padded length ", text.size(),
                                                   " is not a multiple of 4"));
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
      return absl::InvalidArgumentError(
          absl::StrCat("base64: invalid character ",
                       (c >= 0x20 && c < 0x7f) ? absl::StrCat("'", std::string(1, c), "'")
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

bool IsDataUri(std::string_view s) {
  return s.size() >= 5 && Lower(s.substr(0, 5)) == "data:";
}

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
