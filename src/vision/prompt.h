// Prompt assembly for image inputs: each image placeholder token (e.g. <image>) expands into
// num_tokens copies, and the images' embeddings become engine ContentSpans (digest = prefix-cache
// extra key) or, for a direct runner call, runtime::EmbeddingOverrides. Plain C++.
#pragma once

#include <cstdint>
#include <vector>

#include "src/common/status.h"
#include "src/engine/request.h"
#include "src/runtime/batch.h"
#include "src/vision/encoder_cache.h"

namespace muse::vision {

struct ExpandedPrompt {
  std::vector<int32_t> token_ids;
  std::vector<engine::ContentSpan> content;  // one per image, sorted, non-overlapping
};

// Images are matched to placeholders in order. Errors (InvalidArgument naming the field): count
// mismatch between placeholders and `images`, an image without rows, inconsistent data size, or
// hidden sizes that differ from `hidden_size`.
absl::StatusOr<ExpandedPrompt> ExpandImagePlaceholders(const std::vector<int32_t>& prompt_token_ids,
                                                       int32_t image_token_id,
                                                       const std::vector<ImageEmbedding>& images,
                                                       int32_t hidden_size);

// Overrides for the new tokens [context_begin, context_begin + num_new) of one sequence placed at
// flattened batch index `batch_offset`. The pointers alias `content`, which must outlive the batch.
std::vector<runtime::EmbeddingOverride> EmbeddingOverridesFor(
    const std::vector<engine::ContentSpan>& content, int32_t context_begin, int32_t num_new,
    int32_t batch_offset);

}  // namespace muse::vision
