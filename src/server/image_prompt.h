// Prompt assembly for image inputs (only the server expands placeholders): each image placeholder
// token (e.g. <image>) expands into num_tokens copies, and the images' embeddings become engine
// ContentSpans (digest = prefix-cache extra key; the engine turns them into batch embedding rows).
// Plain C++.
#pragma once

#include <cstdint>
#include <vector>

#include "src/common/status.h"
#include "src/engine/request.h"
#include "src/vision/encoder_cache.h"

namespace muse::server {

struct ExpandedPrompt {
  std::vector<int32_t> token_ids;
  std::vector<engine::ContentSpan> content;  // one per image, sorted, non-overlapping
};

// Images are matched to placeholders in order. Errors (InvalidArgument naming the field): count
// mismatch between placeholders and `images`, an image without rows, inconsistent data size, or
// hidden sizes that differ from `hidden_size`.
absl::StatusOr<ExpandedPrompt> ExpandImagePlaceholders(
    const std::vector<int32_t>& prompt_token_ids, int32_t image_token_id,
    const std::vector<vision::ImageEmbedding>& images, int32_t hidden_size);

}  // namespace muse::server
