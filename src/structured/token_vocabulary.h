// The vocabulary as raw bytes, built once per tokenizer: what each token id appends to the output
// (byte-level BPE's "Ġ" alphabet mapped back to bytes, SentencePiece "▁" to a space and
// "<0xNN>" to byte NN, added tokens verbatim). Special tokens (EOS, BOS, chat markers) are never
// grammar text: the matcher allows only the EOS ids, and only where the grammar may end.
// Ids are kept sorted by their bytes, with the common-prefix length to the previous entry, so a
// mask walks them as a trie and skips a whole subtree at the first rejected byte.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace muse::tokenizer {
class Tokenizer;
}  // namespace muse::tokenizer

namespace muse::structured {

namespace internal {
struct SharedTokenClasses;  // token_mask_cache.h
}  // namespace internal

class TokenVocabulary {
 public:
  TokenVocabulary();
  ~TokenVocabulary();

  // `vocab_size` is the model's (the logits' width; may exceed the tokenizer's, the extra ids are
  // never allowed). `eos_token_ids`: what ends a constrained generation.
  static absl::StatusOr<std::shared_ptr<const TokenVocabulary>> FromTokenizer(
      const tokenizer::Tokenizer& tok, int vocab_size, std::vector<int32_t> eos_token_ids);
  // For tests: token i is tokens[i]; ids listed in `special` are never grammar text.
  static std::shared_ptr<const TokenVocabulary> FromBytes(std::vector<std::string> tokens,
                                                          std::vector<int32_t> eos_token_ids,
                                                          std::vector<int32_t> special = {});

  int vocab_size() const { return vocab_size_; }
  int bitmask_words() const { return (vocab_size_ + 31) / 32; }
  // Bytes of `id` ("" for special and out-of-range ids).
  const std::string& bytes(int32_t id) const;
  bool is_special(int32_t id) const;
  std::span<const int32_t> eos_token_ids() const { return eos_; }

  // Non-special, non-empty tokens sorted by bytes; lcp[i] = common prefix length of
  // sorted[i - 1] and sorted[i] (lcp[0] = 0).
  std::span<const int32_t> sorted_ids() const { return sorted_; }
  std::span<const int32_t> lcp() const { return lcp_; }
  // Bytes of sorted_ids()[i], stored contiguously in sorted order (walks read them in sequence).
  std::string_view sorted_bytes(int32_t i) const {
    return std::string_view(sorted_blob_)
        .substr(sorted_offset_[i], sorted_offset_[i + 1] - sorted_offset_[i]);
  }
  // End of the trie subtree at sorted position i: the first j > i whose token does not share the
  // first `prefix_len` bytes of sorted[i] (sorted_ids().size() when none). O(prefix_len) jumps.
  int32_t SubtreeEnd(int32_t i, int32_t prefix_len) const;

  // Token classes that grammars compiled against this vocabulary share (thread-safe).
  internal::SharedTokenClasses& shared_token_classes() const { return *shared_; }

 private:
  int vocab_size_ = 0;
  std::vector<std::string> bytes_;
  std::vector<uint8_t> special_;
  std::vector<int32_t> eos_;
  std::vector<int32_t> sorted_;
  std::vector<int32_t> lcp_;
  std::string sorted_blob_;
  std::vector<uint32_t> sorted_offset_;
  std::vector<int32_t> next_smaller_;
  std::unique_ptr<internal::SharedTokenClasses> shared_;  // first k > j with lcp[k] < lcp[j]
  void BuildIndex();
};

}  // namespace muse::structured
