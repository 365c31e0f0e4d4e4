// HF image preprocessing (CLIPImageProcessor / SiglipImageProcessor) from preprocessor_config.json:
// RGB -> resize (PIL-exact antialiased bicubic/bilinear on uint8) -> center crop -> rescale ->
// normalize -> float [3, H, W]. Plain C++, no libtorch.
#pragma once

#include <array>
#include <string>
#include <utility>
#include <vector>

#include "src/common/status.h"
#include "src/vision/image.h"

namespace muse::vision {

struct PreprocessorConfig {
  std::string image_processor_type = "CLIPImageProcessor";
  bool do_resize = true;
  int shortest_edge = 224;  // > 0: resize the shorter side to this, keeping the aspect ratio
  int resize_height = 0;    // used when shortest_edge == 0: resize to exactly height x width
  int resize_width = 0;
  int resample = 3;  // PIL: 2 = bilinear, 3 = bicubic
  bool do_center_crop = true;
  int crop_height = 224;
  int crop_width = 224;
  bool do_rescale = true;
  double rescale_factor = 1.0 / 255.0;
  bool do_normalize = true;
  std::array<float, 3> image_mean = {0.48145466f, 0.4578275f, 0.40821073f};
  std::array<float, 3> image_std = {0.26862954f, 0.26130258f, 0.27577711f};
  bool do_convert_rgb = true;  // images are always decoded to RGB; recorded for completeness
};

// Defaults of the named processor class (fields absent from the JSON keep them).
PreprocessorConfig DefaultPreprocessorConfig(const std::string& image_processor_type);
// Parses preprocessor_config.json text; errors name the key.
absl::StatusOr<PreprocessorConfig> ParsePreprocessorConfig(const std::string& json_text);
// Reads <model_dir>/preprocessor_config.json.
absl::StatusOr<PreprocessorConfig> LoadPreprocessorConfig(const std::string& model_dir);
// HF-style JSON (ParsePreprocessorConfig round-trips it); also the canonical form hashed into
// image digests.
std::string PreprocessorConfigToJson(const PreprocessorConfig& config);

// Output of preprocessing: float32 [3, height, width], channel-major.
struct PixelValues {
  int height = 0;
  int width = 0;
  std::vector<float> data;
};

absl::StatusOr<PixelValues> Preprocess(const Image& image, const PreprocessorConfig& config);

// Building blocks (exposed for tests and tools).
// HF get_resize_output_image_size(default_to_square=False): {height, width}.
std::pair<int, int> ShortestEdgeOutputSize(int height, int width, int shortest_edge);
// PIL Image.resize(..., resample) on 8-bit RGB: separable, antialiased (support scaled by the
// downscale factor), fixed-point coefficients with 22 fractional bits, uint8 rounding and
// clamping after the horizontal pass and after the vertical pass, a pass skipped when its size is
// unchanged. resample: 2 bilinear, 3 bicubic (a = -0.5).
absl::StatusOr<Image> Resize(const Image& image, int out_height, int out_width, int resample);
// HF image_transforms.center_crop: top = (H - h) // 2, left = (W - w) // 2; zero padding when the
// crop is larger than the image.
Image CenterCrop(const Image& image, int crop_height, int crop_width);

}  // namespace muse::vision
