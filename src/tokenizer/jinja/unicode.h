// UTF-8 helpers that reproduce the JavaScript string semantics of @huggingface/jinja
// (whitespace set of String.prototype.trim, UTF-16 lengths, ASCII-only \w and \b).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace muse::jinja {

// Decodes one code point at `pos`; sets `len` to its byte length (1 for invalid bytes). Not a
// validator (that is tokenizer/utf8.h): like a JS string it keeps the lone surrogates that the
// lexer's \uXXXX escapes encode, so Utf16Length and slicing match @huggingface/jinja.
uint32_t DecodeAt(std::string_view s, size_t pos, size_t* len);
std::vector<uint32_t> DecodeUtf8(std::string_view s);
void AppendUtf8(std::string& out, uint32_t cp);

// The WhiteSpace + LineTerminator set of ECMAScript (what /\s/ and trim() use).
bool IsJsWhitespace(uint32_t cp);
// Byte length of the whitespace code point at `pos`, or 0 if there is none.
size_t WhitespaceLenAt(std::string_view s, size_t pos);
// Byte length of the whitespace code point ending at `end`, or 0 if there is none.
size_t WhitespaceLenBefore(std::string_view s, size_t end);

std::string JsTrim(std::string_view s, bool left, bool right);
// Length in UTF-16 code units, as String.prototype.length reports it.
size_t Utf16Length(std::string_view s);
// Emits the UTF-16 code units of `cp` (one, or a surrogate pair).
void AppendUtf16Units(std::vector<uint16_t>& out, uint32_t cp);

std::string JsToUpper(std::string_view s);
std::string JsToLower(std::string_view s);
// value.replace(/\b\w/g, c => c.toUpperCase()): ASCII word boundaries only.
std::string JsTitleCase(std::string_view s);
// charAt(0).toUpperCase() + slice(1): the rest keeps its case.
std::string JsCapitalize(std::string_view s);

}  // namespace muse::jinja
