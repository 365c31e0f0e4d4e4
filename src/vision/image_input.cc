#include "src/vision/image_input.h"

#include "src/vision/sha256.h"

namespace muse::vision {

uint64_t ImageDigest::key64() const {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | bytes[i];
  return v == 0 ? 1 : v;
}

std::string ImageDigest::hex() const { return ToHex(bytes.data(), bytes.size()); }

ImageDigest ComputeImageDigest(const Image& image, const PreprocessorConfig& config) {
  Sha256 h;
  static constexpr char kDomain[] = "muse-image-v1";
  h.Update(kDomain, sizeof(kDomain));
  const uint32_t dims[2] = {static_cast<uint32_t>(image.width), static_cast<uint32_t>(image.height)};
  h.Update(dims, sizeof(dims));
  const std::string cfg = PreprocessorConfigToJson(config);
  const uint64_t cfg_len = cfg.size();
  h.Update(&cfg_len, sizeof(cfg_len));
  h.Update(cfg.data(), cfg.size());
  h.Update(image.rgb.data(), image.rgb.size());
  ImageDigest d;
  d.bytes = h.Finish();
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
