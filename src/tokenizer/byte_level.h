// GPT-2 byte <-> printable-character mapping shared by the ByteLevel pre-tokenizer and decoder.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace muse::tokenizer {

// UTF-8 encoding (1-2 bytes) of the character that stands for byte `b`.
std::string_view ByteToChars(uint8_t b);

// Appends the byte-level form of `bytes` to `out`.
void AppendByteLevel(std::string_view bytes, std::string& out);

// Byte for byte-level character `cp`, or -1 if `cp` is not in the map.
int CharToByte(uint32_t cp);

}  // namespace muse::tokenizer
