// Unicode NFC normalization (tables generated from the UCD by gen_unicode_tables.py).
#pragma once

#include <string>
#include <string_view>

namespace muse::tokenizer {

// True when `s` (valid UTF-8) holds no code point that could change under NFC, so callers skip
// work.
bool IsTriviallyNfc(std::string_view s);

// NFC of valid UTF-8 `s`.
std::string ToNfc(std::string_view s);

}  // namespace muse::tokenizer
