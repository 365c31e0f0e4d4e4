// Matching fixed markers (`<think>`, `<tool_call>`, `[TOOL_CALLS]`) in text that arrives in
// pieces: a marker may be split across any two deltas, so a parser holds back exactly the tail
// that could still grow into one, and nothing more.
#pragma once

#include <cstddef>
#include <string_view>

namespace muse::chat {

// Length of the longest suffix of `text` that is a proper prefix of `marker` (0 if none): the
// bytes to hold back until the next delta decides whether the marker follows.
inline size_t HeldSuffixLength(std::string_view text, std::string_view marker) {
  const size_t longest = marker.empty() ? 0 : marker.size() - 1;
  for (size_t n = text.size() < longest ? text.size() : longest; n > 0; --n) {
    if (text.substr(text.size() - n) == marker.substr(0, n)) return n;
  }
  return 0;
}

enum class PrefixMatch { kYes, kNo, kPartial };

// Whether `text` starts with `marker` (kYes), cannot (kNo), or is a proper prefix of it so far
// (kPartial: more text is needed to decide).
inline PrefixMatch MatchPrefix(std::string_view text, std::string_view marker) {
  if (text.size() >= marker.size()) {
    return text.substr(0, marker.size()) == marker ? PrefixMatch::kYes : PrefixMatch::kNo;
  }
  return marker.substr(0, text.size()) == text ? PrefixMatch::kPartial : PrefixMatch::kNo;
}

inline bool IsJsonWhitespace(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

}  // namespace muse::chat
