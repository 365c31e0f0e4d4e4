// libFuzzer target for the image entry point (data: URI / raw bytes -> decode -> preprocess),
// built with clang -fsanitize=fuzzer,address,undefined (see CMakeLists.txt). Every input must
// give either pixels of the configured size or InvalidArgument; anything else aborts.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "src/vision/image_input.h"

namespace {

const muse::vision::PreprocessorConfig& Config(bool siglip) {
  static const auto* clip = [] {
    auto* c = new muse::vision::PreprocessorConfig();
    c->shortest_edge = 24;
    c->crop_height = c->crop_width = 20;
    return c;
  }();
  static const auto* sig = [] {
    auto* c = new muse::vision::PreprocessorConfig(
        muse::vision::DefaultPreprocessorConfig("SiglipImageProcessor"));
    c->resize_height = 18;
    c->resize_width = 22;
    return c;
  }();
  return siglip ? *sig : *clip;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const bool siglip = size % 2 == 1;
  // Small limits keep each run fast; the checks themselves are what is being fuzzed.
  const muse::vision::DecodeLimits limits{.max_bytes = 1 << 20, .max_pixels = 1 << 18};
  auto r = muse::vision::PrepareImage(input, Config(siglip), limits);
  if (r.ok()) {
    const int h = siglip ? 18 : 20, w = siglip ? 22 : 20;
    if (r->pixels.height != h || r->pixels.width != w ||
        r->pixels.data.size() != static_cast<size_t>(3 * h * w) ||
        static_cast<int64_t>(r->original_width) * r->original_height > limits.max_pixels) {
      std::abort();
    }
  } else if (r.status().code() != absl::StatusCode::kInvalidArgument) {
    std::abort();
  }
  return 0;
}
