#include "src/tokenizer/incremental_detokenizer.h"

#include "src/common/status.h"
#include "src/tokenizer/tokenizer.h"

namespace muse::tokenizer {
namespace {

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

}  // namespace

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer,
                                               std::span<const int32_t> prompt_ids,
                                               bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {
  // The context must not start inside a character: a cut byte-fallback run decodes to U+FFFD for
  // every byte of the run (HF ByteFallback), which would corrupt the first deltas. Walk back until
  // the context decodes to a suffix of the whole prompt.
  const size_t n = prompt_ids.size();
  size_t start = n > kContext ? n - kContext : 0;
  if (start > 0) {
    auto full = tokenizer_.Decode(prompt_ids, skip_special_tokens_);
    const size_t floor = n > kMaxContextSearch ? n - kMaxContextSearch : 0;
    for (; full.ok() && start > floor; --start) {
      auto tail = tokenizer_.Decode(prompt_ids.subspan(start), skip_special_tokens_);
      if (tail.ok() && full->ends_with(*tail)) break;
    }
  }
  ids_.assign(prompt_ids.begin() + start, prompt_ids.end());
  prefix_offset_ = 0;
  read_offset_ = ids_.size();
}

absl::StatusOr<std::string> IncrementalDetokenizer::Step(int32_t id) {
  ids_.push_back(id);
  std::span<const int32_t> all(ids_);
  ASSIGN_OR_RETURN(std::string prefix_text,
                   tokenizer_.Decode(all.subspan(prefix_offset_, read_offset_ - prefix_offset_),
                                     skip_special_tokens_));
  ASSIGN_OR_RETURN(std::string new_text,
                   tokenizer_.Decode(all.subspan(prefix_offset_), skip_special_tokens_));
  // A trailing U+FFFD means an unfinished character: wait for more tokens.
  if (new_text.size() <= prefix_text.size() || new_text.ends_with(kReplacementChar))
    return std::string();
  std::string delta = new_text.substr(prefix_text.size());
  prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  // Drop emitted tokens beyond the context window so each step stays O(1).
  if (prefix_offset_ > kContext) {
    const size_t drop = prefix_offset_ - kContext;
    ids_.erase(ids_.begin(), ids_.begin() + drop);
    prefix_offset_ -= drop;
    read_offset_ -= drop;
  }
  return delta;
}

absl::StatusOr<std::string> IncrementalDetokenizer::Flush() {
  std::span<const int32_t> all(ids_);
  ASSIGN_OR_RETURN(std::string prefix_text,
                   tokenizer_.Decode(all.subspan(prefix_offset_, read_offset_ - prefix_offset_),
                                     skip_special_tokens_));
  ASSIGN_OR_RETURN(std::string new_text,
                   tokenizer_.Decode(all.subspan(prefix_offset_), skip_special_tokens_));
  prefix_offset_ = read_offset_ = ids_.size();
  if (new_text.size() <= prefix_text.size()) return std::string();
  return new_text.substr(prefix_text.size());
}

}  // namespace muse::tokenizer
