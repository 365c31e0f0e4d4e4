#include "src/vision/image_input.h"

#include <openssl/evp.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "absl/strings/escaping.h"

namespace muse::vision {

uint64_t ImageDigest::key64() const {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | bytes[i];
  return v == 0 ? 1 : v;
}

std::string ImageDigest::hex() const {
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

std::array<uint8_t, 32> Sha256(std::initializer_list<std::string_view> parts) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  bool ok = ctx != nullptr && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1;
  for (std::string_view p : parts) ok = ok && EVP_DigestUpdate(ctx.get(), p.data(), p.size()) == 1;
  std::array<uint8_t, 32> out{};
  unsigned int len = 0;
  ok = ok && EVP_DigestFinal_ex(ctx.get(), out.data(), &len) == 1 && len == out.size();
  if (!ok) {
    // Only an allocation failure inside libcrypto gets here; a wrong digest would poison caches.
    std::fprintf(stderr, "muse: OpenSSL SHA-256 failed\n");
    std::abort();
  }
  return out;
}

ImageDigest ComputeImageDigest(const Image& image, const PreprocessorConfig& config) {
  auto bytes_of = [](const auto& v) {
    return std::string_view(reinterpret_cast<const char*>(&v), sizeof(v));
  };
  static constexpr char kDomain[] = "muse-image-v1";  // hashed with its terminating NUL
  const uint32_t dims[2] = {static_cast<uint32_t>(image.width),
                            static_cast<uint32_t>(image.height)};
  const std::string cfg = PreprocessorConfigToJson(config);
  const uint64_t cfg_len = cfg.size();
  ImageDigest d;
  d.bytes =
      Sha256({std::string_view(kDomain, sizeof(kDomain)), bytes_of(dims), bytes_of(cfg_len), cfg,
              std::string_view(reinterpret_cast<const char*>(image.rgb.data()), image.rgb.size())});
  return d;
}

absl::StatusOr<PreparedImage> PrepareImage(std::string_view input, const PreprocessorConfig& config,
                                           const DecodeLimits& limits) {
  std::string decoded;
  std::string_view bytes = input;
  if (IsDataUri(input)) {
    ASSIGN_OR_RETURN(DataUri uri, ParseDataUri(input, limits.max_bytes));
    decoded = std::move(uri.bytes);
    bytes = decoded;
  }
  ASSIGN_OR_RETURN(Image image, DecodeImage(bytes, limits));
  PreparedImage out;
  out.original_width = image.width;
  out.original_height = image.height;
  out.digest = ComputeImageDigest(image, config);
  ASSIGN_OR_RETURN(out.pixels, Preprocess(image, config));
  return out;
}

}  // namespace muse::vision
