#include "src/tokenizer/jinja/unicode.h"

namespace muse::jinja {

uint32_t DecodeAt(std::string_view s, size_t pos, size_t* len) {
  const auto c = static_cast<unsigned char>(s[pos]);
  auto cont = [&](size_t i) -> int {
    if (pos + i >= s.size()) return -1;
    const auto b = static_cast<unsigned char>(s[pos + i]);
    return (b & 0xC0) == 0x80 ? (b & 0x3F) : -1;
  };
  if (c < 0x80) {
    *len = 1;
    return c;
  }
  if ((c & 0xE0) == 0xC0) {
    const int b1 = cont(1);
    if (b1 >= 0) {
      *len = 2;
      return ((c & 0x1F) << 6) | b1;
    }
  } else if ((c & 0xF0) == 0xE0) {
    const int b1 = cont(1), b2 = cont(2);
    if (b1 >= 0 && b2 >= 0) {
      *len = 3;
      return ((c & 0x0F) << 12) | (b1 << 6) | b2;
    }
  } else if ((c & 0xF8) == 0xF0) {
    const int b1 = cont(1), b2 = cont(2), b3 = cont(3);
    if (b1 >= 0 && b2 >= 0 && b3 >= 0) {
      *len = 4;
      return ((c & 0x07) << 18) | (b1 << 12) | (b2 << 6) | b3;
    }
  }
  *len = 1;
  return 0xFFFD;
}

std::vector<uint32_t> DecodeUtf8(std::string_view s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t len = 1;
    out.push_back(DecodeAt(s, i, &len));
    i += len;
  }
  return out;
}

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool IsJsWhitespace(uint32_t cp) {
  switch (cp) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
    case 0xFEFF:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

size_t WhitespaceLenAt(std::string_view s, size_t pos) {
  if (pos >= s.size()) return 0;
  size_t len = 1;
  return IsJsWhitespace(DecodeAt(s, pos, &len)) ? len : 0;
}

size_t WhitespaceLenBefore(std::string_view s, size_t end) {
  if (end == 0) return 0;
  size_t start = end - 1;
  while (start > 0 && end - start < 4 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80)
    --start;
  size_t len = 1;
  const uint32_t cp = DecodeAt(s, start, &len);
  return (start + len == end && IsJsWhitespace(cp)) ? len : 0;
}

std::string JsTrim(std::string_view s, bool left, bool right) {
  size_t begin = 0, end = s.size();
  if (left) {
    while (size_t n = WhitespaceLenAt(s, begin)) begin += n;
  }
  if (right) {
    while (end > begin) {
      const size_t n = WhitespaceLenBefore(s, end);
      if (n == 0) break;
      end -= n;
    }
  }
  return std::string(s.substr(begin, end - begin));
}

size_t Utf16Length(std::string_view s) {
  size_t n = 0;
  for (uint32_t cp : DecodeUtf8(s)) n += cp >= 0x10000 ? 2 : 1;
  return n;
}

void AppendUtf16Units(std::vector<uint16_t>& out, uint32_t cp) {
  if (cp >= 0x10000) {
    cp -= 0x10000;
    out.push_back(static_cast<uint16_t>(0xD800 | (cp >> 10)));
    out.push_back(static_cast<uint16_t>(0xDC00 | (cp & 0x3FF)));
  } else {
    out.push_back(static_cast<uint16_t>(cp));
  }
}

namespace {

// Simple one-to-one case mappings for the scripts chat content commonly uses
// (ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic). Special casings such as ß are not mapped.
uint32_t UpperCp(uint32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if (c < 0x80) return c;
  if ((c >= 0xE0 && c <= 0xFE && c != 0xF7)) return c - 32;
  if (c == 0xFF) return 0x178;
  if (c >= 0x100 && c <= 0x17F && c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149 &&
      c != 0x17F) {
    const bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
    if (odd_upper ? (c % 2 == 0) : (c % 2 == 1)) return c - 1;
    return c;
  }
  if (c >= 0x3B1 && c <= 0x3CB && c != 0x3C2) return c - 32;
  if (c == 0x3C2) return 0x3A3;
  if (c == 0x3AC) return 0x386;
  if (c >= 0x3AD && c <= 0x3AF) return c - 37;
  if (c == 0x3CC) return 0x38C;
  if (c == 0x3CD || c == 0x3CE) return c - 63;
  if (c >= 0x430 && c <= 0x44F) return c - 32;
  if (c >= 0x450 && c <= 0x45F) return c - 80;
  return c;
}

uint32_t LowerCp(uint32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c < 0x80) return c;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
  if (c == 0x178) return 0xFF;
  if (c >= 0x100 && c <= 0x17F && c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149 &&
      c != 0x17F) {
    const bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
    if (odd_upper ? (c % 2 == 1) : (c % 2 == 0)) return c + 1;
    return c;
  }
  if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 32;
  if (c == 0x386) return 0x3AC;
  if (c >= 0x388 && c <= 0x38A) return c + 37;
  if (c == 0x38C) return 0x3CC;
  if (c == 0x38E || c == 0x38F) return c + 63;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  return c;
}

bool IsAsciiWord(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

}  // namespace

std::string JsToUpper(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (uint32_t cp : DecodeUtf8(s)) AppendUtf8(out, UpperCp(cp));
  return out;
}

std::string JsToLower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (uint32_t cp : DecodeUtf8(s)) AppendUtf8(out, LowerCp(cp));
  return out;
}

std::string JsTitleCase(std::string_view s) {
  std::string out(s);
  for (size_t i = 0; i < out.size(); ++i) {
    const bool boundary = i == 0 || !IsAsciiWord(out[i - 1]);
    if (boundary && out[i] >= 'a' && out[i] <= 'z') out[i] = static_cast<char>(out[i] - 32);
  }
  return out;
}

std::string JsCapitalize(std::string_view s) {
  if (s.empty()) return "";
  size_t len = 1;
  const uint32_t cp = DecodeAt(s, 0, &len);
  std::string out;
  AppendUtf8(out, UpperCp(cp));
  out.append(s.substr(len));
  return out;
}

}  // namespace muse::jinja
