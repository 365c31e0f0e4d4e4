#include "src/server/image_prompt.h"

#include <algorithm>

namespace muse::server {

absl::StatusOr<ExpandedPrompt> ExpandImagePlaceholders(
    const std::vector<int32_t>& prompt_token_ids, int32_t image_token_id,
    const std::vector<vision::ImageEmbedding>& images, int32_t hidden_size) {
  const size_t placeholders =
      std::count(prompt_token_ids.begin(), prompt_token_ids.end(), image_token_id);
  if (placeholders != images.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("images: the prompt has ", placeholders, " image placeholder(s) (token id ",
                     image_token_id, ") but the request has ", images.size(), " image(s)"));
  }
  ExpandedPrompt out;
  size_t total = prompt_token_ids.size();
  for (size_t i = 0; i < images.size(); ++i) {
    const vision::ImageEmbedding& im = images[i];
    if (im.num_tokens <= 0 || !im.data) {
      return absl::InvalidArgumentError(absl::StrCat("images[", i, "]: no embedding rows"));
    }
    if (im.hidden_size != hidden_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "images[", i, "].hidden_size: ", im.hidden_size, " != model hidden size ", hidden_size));
    }
    if (im.data->size() != static_cast<size_t>(im.num_tokens) * im.hidden_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "images[", i, "].data: ", im.data->size(), " floats != num_tokens * hidden_size = ",
          static_cast<int64_t>(im.num_tokens) * im.hidden_size));
    }
    total += im.num_tokens - 1;
  }
  if (total > static_cast<size_t>(INT32_MAX)) {
    return absl::InvalidArgumentError("images: expanded prompt is too long");
  }
  out.token_ids.reserve(total);
  size_t next = 0;
  for (int32_t t : prompt_token_ids) {
    if (t != image_token_id) {
      out.token_ids.push_back(t);
      continue;
    }
    const vision::ImageEmbedding& im = images[next++];
    engine::ContentSpan span;
    span.offset = static_cast<int32_t>(out.token_ids.size());
    span.num_tokens = im.num_tokens;
    span.digest = im.digest.key64();
    span.embeddings = im.data;
    out.content.push_back(std::move(span));
    out.token_ids.insert(out.token_ids.end(), im.num_tokens, image_token_id);
  }
  return out;
}

}  // namespace muse::server
