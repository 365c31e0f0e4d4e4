// Finds stop strings in streamed text that may span token (chunk) boundaries. Text that could still
// turn into a stop string is held back; a stop string itself is never emitted.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace muse::tokenizer {

class StopStringMatcher {
 public:
  struct Result {
    std::string text;                  // safe to emit now
    std::optional<size_t> stop_index;  // index into the stop list once one matched
  };

  explicit StopStringMatcher(std::vector<std::string> stops);

  // Feeds the next chunk (complete UTF-8). After a match, further calls return nothing.
  Result Feed(std::string_view chunk);
  // End of stream without a stop: releases the held-back text.
  std::string Flush();

  bool stopped() const { return stopped_.has_value(); }
  std::optional<size_t> matched_stop() const { return stopped_; }

 private:
  // Longest suffix of held_ that is a proper prefix of some stop string.
  size_t HoldLength() const;

  std::vector<std::string> stops_;
  std::string held_;
  std::optional<size_t> stopped_;
};

}  // namespace muse::tokenizer
