// The image encoder interface the server/engine use: preprocessed pixels in, projected image
// embeddings (rows for the decoder's input) out. Plain C++: no libtorch in this header.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "models/llava/llava_config.h"
#include "src/common/status.h"
#include "src/vision/preprocess.h"

namespace muse::models::llava {

class ImageEncoder {
 public:
  virtual ~ImageEncoder() = default;
  virtual const LlavaConfig& config() const = 0;
  int64_t num_image_tokens() const { return config().num_image_tokens(); }
  int64_t hidden_size() const { return config().text.hidden_size; }
  // Encodes N images in one batched pass: each result is [num_image_tokens, hidden_size] fp32.
  // Every image must be [3, image_size, image_size]; a mismatch is InvalidArgument naming the
  // index. Not thread-safe: one caller at a time (ATen's intra-op pool parallelises inside).
  virtual absl::StatusOr<std::vector<std::vector<float>>> EncodeBatch(
      const std::vector<const vision::PixelValues*>& images) = 0;
};

struct ImageEncoderOptions {
  std::string dtype = "float32";  // float32, bfloat16, float16
  int num_threads = 0;            // 0 = keep libtorch's default
};

// Loads the vision tower and projector of the LLaVA checkpoint in `model_dir`.
absl::StatusOr<std::unique_ptr<ImageEncoder>> CreateImageEncoder(
    const std::string& model_dir, const ImageEncoderOptions& options);

}  // namespace muse::models::llava
