// UTF-8 helpers shared by the tokenizer pipeline, the decoders, the streaming detokenizer, the chat
// templates (jinja/unicode) and the server's request checks: the project's one UTF-8 validator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"

namespace muse::tokenizer {

// Debian's absl::string_view is its own type; hash-map lookups need it.
inline absl::string_view AbslView(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

inline constexpr size_t kUtf8Valid = static_cast<size_t>(-1);

// Well-formed means Unicode Table 3-7: shortest form only (no overlongs), no surrogates
// (U+D800..U+DFFF), nothing above U+10FFFF, no sequence cut short by the end of the input.

// Byte offset of the first byte that does not start a well-formed UTF-8 sequence, or kUtf8Valid.
size_t FindInvalidUtf8(std::string_view s);

inline bool IsValidUtf8(std::string_view s) { return FindInvalidUtf8(s) == kUtf8Valid; }

// Byte length (1-4) of the well-formed sequence starting at s[i], or 0 when it is ill-formed or
// truncated. Requires i < s.size().
size_t Utf8SequenceLength(std::string_view s, size_t i);

// Length of the longest prefix of `s` that ends on a complete UTF-8 character; an incomplete
// (but so far well-formed) sequence at the end is excluded so callers can hold it back.
size_t CompleteUtf8Prefix(std::string_view s);

// Decodes the code point at `s[i]` (input must be valid UTF-8) and advances `i`.
inline uint32_t DecodeUtf8(std::string_view s, size_t& i) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  if (b0 < 0xE0) {
    uint32_t c = ((b0 & 0x1Fu) << 6) | (static_cast<uint8_t>(s[i + 1]) & 0x3Fu);
    i += 2;
    return c;
  }
  if (b0 < 0xF0) {
    uint32_t c = ((b0 & 0x0Fu) << 12) | ((static_cast<uint8_t>(s[i + 1]) & 0x3Fu) << 6) |
                 (static_cast<uint8_t>(s[i + 2]) & 0x3Fu);
    i += 3;
    return c;
  }
  uint32_t c = ((b0 & 0x07u) << 18) | ((static_cast<uint8_t>(s[i + 1]) & 0x3Fu) << 12) |
               ((static_cast<uint8_t>(s[i + 2]) & 0x3Fu) << 6) |
               (static_cast<uint8_t>(s[i + 3]) & 0x3Fu);
  i += 4;
  return c;
}

// Number of bytes of the UTF-8 sequence starting with lead byte `b` (1 for stray bytes).
inline size_t Utf8SeqLen(uint8_t b) {
  if (b < 0xC0) return 1;
  if (b < 0xE0) return 2;
  if (b < 0xF0) return 3;
  return 4;
}

void AppendUtf8(uint32_t cp, std::string& out);

// Same result as Rust's String::from_utf8_lossy: each maximal invalid subpart becomes U+FFFD.
std::string Utf8Lossy(std::string_view bytes);

// Unicode White_Space (what Rust's char::is_whitespace and Oniguruma's \s accept).
bool IsUnicodeWhitespace(uint32_t cp);

}  // namespace muse::tokenizer
