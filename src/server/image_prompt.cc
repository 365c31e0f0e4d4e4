#include "src/server/image_prompt.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace muse::server {

absl::StatusOr<ExpandedPrompt> ExpandPlaceholders(const std::vector<int32_t>& prompt_token_ids,
                                                  const std::vector<PlaceholderGroup>& groups,
                                                  int32_t hidden_size) {
  size_t total = prompt_token_ids.size();
  for (size_t g = 0; g < groups.size(); ++g) {
    const PlaceholderGroup& group = groups[g];
    for (size_t h = 0; h < g; ++h) {
      if (groups[h].token_id == group.token_id) {
        return absl::InvalidArgumentError(absl::StrCat(group.name, ": placeholder token id ",
                                                       group.token_id, " is also ", groups[h].name,
                                                       "' placeholder"));
      }
    }
    const size_t placeholders =
        std::count(prompt_token_ids.begin(), prompt_token_ids.end(), group.token_id);
    if (placeholders != group.embeddings.size()) {
      return absl::InvalidArgumentError(absl::StrCat(group.name, ": the prompt has ", placeholders,
                                                     " ", group.kind, " placeholder(s) (token id ",
                                                     group.token_id, ") but the request has ",
                                                     group.embeddings.size(), " ", group.items));
    }
    for (size_t i = 0; i < group.embeddings.size(); ++i) {
      const vision::ImageEmbedding& e = group.embeddings[i];
      if (e.num_tokens <= 0 || !e.data) {
        return absl::InvalidArgumentError(absl::StrCat(group.name, "[", i, "]: no embedding rows"));
      }
      if (e.hidden_size != hidden_size) {
        return absl::InvalidArgumentError(absl::StrCat(group.name, "[", i,
                                                       "].hidden_size: ", e.hidden_size,
                                                       " != model hidden size ", hidden_size));
      }
      if (e.data->size() != static_cast<size_t>(e.num_tokens) * e.hidden_size) {
        return absl::InvalidArgumentError(
            absl::StrCat(group.name, "[", i, "].data: ", e.data->size(),
                         " floats != num_tokens * hidden_size = ",
                         static_cast<int64_t>(e.num_tokens) * e.hidden_size));
      }
      total += e.num_tokens - 1;
    }
  }
  if (total > static_cast<size_t>(INT32_MAX)) {
    return absl::InvalidArgumentError("input: expanded prompt is too long");
  }
  ExpandedPrompt out;
  out.token_ids.reserve(total);
  std::vector<size_t> next(groups.size(), 0);
  for (int32_t t : prompt_token_ids) {
    size_t g = 0;
    while (g < groups.size() && groups[g].token_id != t) ++g;
    if (g == groups.size()) {
      out.token_ids.push_back(t);
      continue;
    }
    const vision::ImageEmbedding& e = groups[g].embeddings[next[g]++];
    engine::ContentSpan span;
    span.offset = static_cast<int32_t>(out.token_ids.size());
    span.num_tokens = e.num_tokens;
    span.digest = e.digest.key64();
    span.embeddings = e.data;
    out.content.push_back(std::move(span));
    out.token_ids.insert(out.token_ids.end(), e.num_tokens, t);
  }
  return out;
}

absl::StatusOr<ExpandedPrompt> ExpandImagePlaceholders(
    const std::vector<int32_t>& prompt_token_ids, int32_t image_token_id,
    const std::vector<vision::ImageEmbedding>& images, int32_t hidden_size) {
  return ExpandPlaceholders(prompt_token_ids,
                            {{"images", "image", "image(s)", image_token_id, images}}, hidden_size);
}

}  // namespace muse::server
