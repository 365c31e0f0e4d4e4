#include "src/structured/token_vocabulary.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "src/structured/token_mask_cache.h"
#include "src/tokenizer/tokenizer.h"

namespace muse::structured {

TokenVocabulary::TokenVocabulary() : shared_(std::make_unique<internal::SharedTokenClasses>()) {}
TokenVocabulary::~TokenVocabulary() = default;

absl::StatusOr<std::shared_ptr<const TokenVocabulary>> TokenVocabulary::FromTokenizer(
    const tokenizer::Tokenizer& tok, int vocab_size, std::vector<int32_t> eos_token_ids) {
  if (vocab_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("vocab_size must be positive, got ", vocab_size));
  }
  if (eos_token_ids.empty()) return absl::InvalidArgumentError("no EOS token id given");
  for (int32_t e : eos_token_ids) {
    if (e < 0 || e >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("EOS token id ", e, " is outside the vocabulary [0, ", vocab_size, ")"));
    }
  }
  std::vector<std::string> tokens(vocab_size);
  std::vector<int32_t> special;
  const int known = static_cast<int>(std::min<size_t>(tok.vocab_size(), vocab_size));
  for (int32_t id = 0; id < vocab_size; ++id) {
    std::optional<std::string> b = id < known ? tok.TokenBytes(id) : std::nullopt;
    // Ids the tokenizer does not know (padding rows of the embedding) are never allowed.
    if (!b || tok.IsSpecial(id)) {
      special.push_back(id);
      continue;
    }
    tokens[id] = std::move(*b);
  }
  return FromBytes(std::move(tokens), std::move(eos_token_ids), std::move(special));
}

std::shared_ptr<const TokenVocabulary> TokenVocabulary::FromBytes(
    std::vector<std::string> tokens, std::vector<int32_t> eos_token_ids,
    std::vector<int32_t> special) {
  auto v = std::make_shared<TokenVocabulary>();
  v->vocab_size_ = static_cast<int>(tokens.size());
  v->bytes_ = std::move(tokens);
  v->special_.assign(v->bytes_.size(), 0);
  // EOS ids end the output; they are never grammar text even when the tokenizer does not flag
  // them special.
  for (int32_t id : special) {
    if (id >= 0 && id < v->vocab_size_) v->special_[id] = 1;
  }
  for (int32_t id : eos_token_ids) {
    if (id >= 0 && id < v->vocab_size_) {
      v->special_[id] = 1;
      v->eos_.push_back(id);
    }
  }
  for (int32_t id : special) {
    if (id >= 0 && id < v->vocab_size_) v->bytes_[id].clear();
  }
  for (int32_t id = 0; id < v->vocab_size_; ++id) {
    if (v->special_[id]) v->bytes_[id].clear();
    if (!v->bytes_[id].empty()) v->sorted_.push_back(id);
  }
  std::sort(v->sorted_.begin(), v->sorted_.end(), [&](int32_t a, int32_t b) {
    return v->bytes_[a] < v->bytes_[b] || (v->bytes_[a] == v->bytes_[b] && a < b);
  });
  v->BuildIndex();
  return v;
}

void TokenVocabulary::BuildIndex() {
  const size_t n = sorted_.size();
  sorted_offset_.assign(1, 0);
  for (int32_t id : sorted_) {
    sorted_blob_ += bytes_[id];
    sorted_offset_.push_back(static_cast<uint32_t>(sorted_blob_.size()));
  }
  lcp_.assign(n, 0);
  for (size_t i = 1; i < n; ++i) {
    const std::string& a = bytes_[sorted_[i - 1]];
    const std::string& b = bytes_[sorted_[i]];
    const size_t m = std::min(a.size(), b.size());
    size_t k = 0;
    while (k < m && a[k] == b[k]) ++k;
    lcp_[i] = static_cast<int32_t>(k);
  }
  // Next smaller element, right to left with a stack.
  next_smaller_.assign(n, static_cast<int32_t>(n));
  std::vector<int32_t> stack;
  for (int32_t j = static_cast<int32_t>(n) - 1; j >= 0; --j) {
    while (!stack.empty() && lcp_[stack.back()] >= lcp_[j]) stack.pop_back();
    if (!stack.empty()) next_smaller_[j] = stack.back();
    stack.push_back(j);
  }
}

int32_t TokenVocabulary::SubtreeEnd(int32_t i, int32_t prefix_len) const {
  const int32_t n = static_cast<int32_t>(sorted_.size());
  int32_t j = i + 1;
  // Every k in (j, next_smaller_[j]) has lcp[k] >= lcp[j], so a run of long common prefixes is
  // skipped in one jump; each jump lowers lcp by at least one.
  while (j < n && lcp_[j] >= prefix_len) j = next_smaller_[j];
  return j;
}

const std::string& TokenVocabulary::bytes(int32_t id) const {
  static const std::string kEmpty;
  if (id < 0 || id >= vocab_size_) return kEmpty;
  return bytes_[id];
}

bool TokenVocabulary::is_special(int32_t id) const {
  return id < 0 || id >= vocab_size_ || special_[id] != 0;
}

}  // namespace muse::structured
