// Prompt assembly for image and audio inputs (only the server expands placeholders): each
// placeholder token (e.g. <image>, <|AUDIO|>) expands into its embedding's num_tokens copies, and
// the embeddings become engine ContentSpans (digest = prefix-cache extra key; the engine turns
// them into batch embedding rows). Plain C++.
#pragma once

#include <cstdint>
#include <vector>

#include "src/common/status.h"
#include "src/engine/request.h"
#include "src/vision/encoder_cache.h"

namespace muse::server {

struct ExpandedPrompt {
  std::vector<int32_t> token_ids;
  std::vector<engine::ContentSpan> content;  // one per image / clip, sorted, non-overlapping
};

// One modality: its placeholder token and its embeddings in placeholder order. An audio clip's
// embedding has its own num_tokens (its length); an image's is the model's fixed count.
struct PlaceholderGroup {
  const char* name = "images";     // in errors: "images", "audio"
  const char* kind = "image";      // "image placeholder(s)", "audio placeholder(s)"
  const char* items = "image(s)";  // "image(s)", "audio clip(s)"
  int32_t token_id = 0;
  std::vector<vision::ImageEmbedding> embeddings;
};

// Every group's placeholders are matched to its embeddings in order, in one pass over the prompt
// (so spans of different modalities interleave as their placeholders do). Errors (InvalidArgument
// naming the group): count mismatch, an embedding without rows, inconsistent data size, a hidden
// size other than `hidden_size`, two groups with one token id.
absl::StatusOr<ExpandedPrompt> ExpandPlaceholders(const std::vector<int32_t>& prompt_token_ids,
                                                  const std::vector<PlaceholderGroup>& groups,
                                                  int32_t hidden_size);

// ExpandPlaceholders with one group, the images. Images are matched to placeholders in order.
// Errors (InvalidArgument naming the field): count mismatch between placeholders and `images`, an
// image without rows, inconsistent data size, or hidden sizes that differ from `hidden_size`.
absl::StatusOr<ExpandedPrompt> ExpandImagePlaceholders(
    const std::vector<int32_t>& prompt_token_ids, int32_t image_token_id,
    const std::vector<vision::ImageEmbedding>& images, int32_t hidden_size);

}  // namespace muse::server
