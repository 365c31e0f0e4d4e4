// Text is pluggable: the engine works on token ids; the server plugs the real tokenizer in through
// TextDecoderFactory. StopStringMatcher (engine-side) finds stop strings in the decoded stream and
// holds back text that may still become one, so clients never see a stop string's prefix.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace muse::engine {

// Incremental detokenizer for one sample. Called on the engine thread only.
class TextDecoder {
 public:
  virtual ~TextDecoder() = default;
  // Feeds one generated token; returns the text that became final (empty while e.g. a UTF-8
  // sequence or a merge is incomplete).
  virtual std::string Decode(int32_t token_id) = 0;
  // Whatever is still held back, at the end of the sample.
  virtual std::string Flush() = 0;
};

class TextDecoderFactory {
 public:
  virtual ~TextDecoderFactory() = default;
  // One decoder per sample; the prompt gives context (leading spaces, byte fallback state).
  // Called on the engine thread; must be thread-compatible with other engine instances.
  virtual std::unique_ptr<TextDecoder> Create(const std::vector<int32_t>& prompt_token_ids) = 0;
};

class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops);

  struct Result {
    std::string text;  // safe to emit now
    bool stopped = false;
    std::string matched;  // the stop string, when stopped
  };
  // Adds decoded text; a match truncates the text before the stop string.
  Result Append(std::string_view text);
  // End of the sample without a match: releases the held-back tail.
  std::string Flush();

 private:
  std::vector<std::string> stops_;
  size_t max_len_ = 0;
  std::string pending_;  // not yet emitted; shorter than the longest stop string
};

}  // namespace muse::engine
