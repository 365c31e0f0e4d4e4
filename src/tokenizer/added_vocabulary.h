// Added/special tokens, found in the text before normalization and BPE (HF AddedVocabulary).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"

namespace muse::tokenizer {

class Normalizer;

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
};

// A run of input text: an added token (id >= 0) or plain text to normalize and tokenize (id < 0).
struct Segment {
  size_t begin;
  size_t end;
  int32_t id;
};

class AddedVocabulary {
 public:
  // Builds both matchers; contents of normalized tokens go through `normalizer` first, as in HF.
  absl::Status Build(std::vector<AddedToken> tokens, const Normalizer* normalizer);

  // Leftmost-longest split of `text` on the raw (normalized == false) or normalized tokens.
  void Split(std::string_view text, bool normalized_set, std::vector<Segment>& out) const;
  bool has_normalized() const { return !normalized_.nodes.empty() && normalized_.has_tokens; }

  const AddedToken* FindById(int32_t id) const;
  std::optional<int32_t> FindByContent(std::string_view content) const;
  bool IsSpecialId(int32_t id) const;

 private:
  // Byte trie: edges in one hash map keyed by (node, byte).
  struct Trie {
    std::vector<int32_t> nodes;  // token index ending at node, or -1
    absl::flat_hash_map<uint64_t, int32_t> edges;
    bool first_byte[256] = {};
    bool has_tokens = false;
    void Insert(std::string_view s, int32_t token_index);
    // Length of the longest token starting at text[pos] and its index; 0 if none.
    size_t LongestAt(std::string_view text, size_t pos, int32_t& token_index) const;
  };
  void SplitWith(const Trie& trie, std::string_view text, std::vector<Segment>& out) const;

  std::vector<AddedToken> tokens_;
  absl::flat_hash_map<int32_t, size_t> by_id_;
  absl::flat_hash_map<std::string, int32_t> by_content_;
  Trie raw_;
  Trie normalized_;
};

}  // namespace muse::tokenizer
