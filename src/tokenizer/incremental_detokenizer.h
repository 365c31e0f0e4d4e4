// Streaming detokenizer for one sequence: turns ids into text deltas that concatenate to the full
// decode. Uses the prefix-offset / read-offset technique (vLLM, TGI): each step decodes a short
// window twice and emits the difference, so SentencePiece leading-space handling and characters
// spread over several tokens (byte fallback, byte-level) come out as a full decode would give them.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace muse::tokenizer {

class Tokenizer;

class IncrementalDetokenizer {
 public:
  // `prompt_ids` (may be empty) give left context so the first generated token decodes as it
  // would after the prompt; only their tail is kept.
  IncrementalDetokenizer(const Tokenizer& tokenizer, std::span<const int32_t> prompt_ids,
                         bool skip_special_tokens);

  // Adds one generated id; returns the newly completed text (possibly empty: a partial character
  // is held back until it completes).
  absl::StatusOr<std::string> Step(int32_t id);
  // End of stream: whatever is still held (an unfinished character decodes to U+FFFD).
  absl::StatusOr<std::string> Flush();

 private:
  // Context tokens kept before the read offset; enough for any decoder's look-behind.
  static constexpr size_t kContext = 6;
  // How far back the constructor looks for a prompt position that starts a character.
  static constexpr size_t kMaxContextSearch = 64;
  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  std::vector<int32_t> ids_;
  size_t prefix_offset_ = 0;  // start of the window already emitted (context)
  size_t read_offset_ = 0;    // end of the emitted part
};

}  // namespace muse::tokenizer
