#include "src/tokenizer/byte_level.h"

#include <array>

#include "src/tokenizer/utf8.h"

namespace muse::tokenizer {
namespace {

struct Tables {
  std::array<std::string, 256> chars;
  std::array<int16_t, 324> byte_of;  // every mapped code point is < 256 + 68
  Tables() {
    byte_of.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      const uint32_t cp = printable ? b : 256 + n++;
      AppendUtf8(cp, chars[b]);
      byte_of[cp] = static_cast<int16_t>(b);
    }
  }
};

const Tables& T() {
  static const Tables t;
  return t;
}

}  // namespace

std::string_view ByteToChars(uint8_t b) { return T().chars[b]; }

void AppendByteLevel(std::string_view bytes, std::string& out) {
  const Tables& t = T();
  for (char c : bytes) out += t.chars[static_cast<uint8_t>(c)];
}

int CharToByte(uint32_t cp) { return cp < 324 ? T().byte_of[cp] : -1; }

}  // namespace muse::tokenizer
