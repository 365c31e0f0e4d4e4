// tokenizer.json "model" of type BPE: vocab, ranked merges, byte fallback and unk handling.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "src/tokenizer/word_cache.h"

namespace muse::tokenizer {

class BpeModel {
 public:
  static absl::StatusOr<std::unique_ptr<BpeModel>> FromJson(const nlohmann::json& model);

  // Appends the ids of one pre-token. Thread-safe.
  void Tokenize(std::string_view word, std::vector<int32_t>& out) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  // nullptr when `id` is not in the vocab.
  const std::string* IdToToken(int32_t id) const;
  // One past the largest id.
  size_t size() const { return id_to_token_.size(); }

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  // Splits `word` into initial symbols (chars, byte-fallback bytes, fused unk) as HF merge_word
  // does.
  void InitialSymbols(std::string_view word, std::vector<int32_t>& ids) const;
  // Applies merges lowest rank first (ties: leftmost) with a heap over a linked list of symbols.
  void MergeAll(std::vector<int32_t>& ids) const;
  const Merge* FindMerge(int32_t a, int32_t b) const {
    auto it = merges_.find(PairKey(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  }

  absl::flat_hash_map<std::string, int32_t> vocab_;
  absl::flat_hash_map<uint32_t, int32_t> char_ids_;  // single-code-point tokens, the common lookup
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  absl::flat_hash_map<uint64_t, Merge> merges_;
  int32_t byte_ids_[256];  // <0xXX> tokens when byte_fallback is on, -1 otherwise
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  std::optional<int32_t> unk_id_;
  std::string prefix_;  // continuing_subword_prefix
  std::string suffix_;  // end_of_word_suffix
  std::unique_ptr<WordCache> cache_;
};

}  // namespace muse::tokenizer
