#include "src/chat/json_call.h"

#include <algorithm>

#include "nlohmann/json.hpp"
#include "src/chat/marker.h"

namespace muse::chat::internal {
namespace {

size_t SkipWs(std::string_view text, size_t i) {
  while (i < text.size() && IsJsonWhitespace(text[i])) ++i;
  return i;
}

// Decodes a string literal the scanner delimited (escapes, \uXXXX); false if it is invalid.
bool DecodeString(std::string_view literal, std::string* out) {
  nlohmann::json j = nlohmann::json::parse(literal, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_string()) return false;
  *out = j.get<std::string>();
  return true;
}

// Runs out of text: a real need for more text, unless the header cap was what cut the view.
CallHeader Short(bool capped) {
  CallHeader h;
  h.scan = capped ? Scan::kMalformed : Scan::kNeedMore;
  return h;
}

CallHeader Bad() {
  CallHeader h;
  h.scan = Scan::kMalformed;
  return h;
}

}  // namespace

Extent ScanString(std::string_view text, size_t pos) {
  for (size_t i = pos + 1; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '\\') {
      ++i;  // the escaped byte, whatever it is (DecodeString checks escapes)
    } else if (c == '"') {
      return {Scan::kDone, i + 1};
    } else if (c < 0x20) {
      return {Scan::kMalformed, 0};  // raw control characters are not allowed in JSON strings
    }
  }
  return {Scan::kNeedMore, 0};
}

CallHeader ParseCallHeader(std::string_view full, size_t pos) {
  // Everything is decided within kMaxHeaderBytes of pos, whatever the chunking.
  const bool capped = full.size() - pos > kMaxHeaderBytes;
  const std::string_view text = full.substr(0, std::min(full.size(), pos + kMaxHeaderBytes));
  size_t i = SkipWs(text, pos);
  if (i == text.size()) return Short(capped);
  if (text[i] != '{') return Bad();
  ++i;
  std::string name;
  bool have_name = false;
  for (bool first = true;; first = false) {
    i = SkipWs(text, i);
    if (i == text.size()) return Short(capped);
    if (!first) {
      if (text[i] == '}') {
        if (!have_name) return Bad();
        CallHeader h;
        h.scan = Scan::kDone;
        h.name = std::move(name);
        h.end = i + 1;
        h.no_args = true;
        return h;
      }
      if (text[i] != ',') return Bad();
      i = SkipWs(text, i + 1);
      if (i == text.size()) return Short(capped);
    }
    if (text[i] != '"') return Bad();
    const Extent key_extent = ScanString(text, i);
    if (key_extent.scan == Scan::kNeedMore) return Short(capped);
    std::string key;
    if (key_extent.scan == Scan::kMalformed ||
        !DecodeString(text.substr(i, key_extent.end - i), &key)) {
      return Bad();
    }
    i = SkipWs(text, key_extent.end);
    if (i == text.size()) return Short(capped);
    if (text[i] != ':') return Bad();
    i = SkipWs(text, i + 1);
    if (i == text.size()) return Short(capped);
    if (key == "arguments" || key == "parameters") {
      if (text[i] != '{') return Bad();
      CallHeader h;
      h.scan = Scan::kDone;
      h.name = std::move(name);
      h.end = i;
      h.args_first = !have_name;
      return h;
    }
    if (text[i] != '"') return Bad();  // members before the arguments hold strings
    const Extent value = ScanString(text, i);
    if (value.scan == Scan::kNeedMore) return Short(capped);
    std::string decoded;
    if (value.scan == Scan::kMalformed || !DecodeString(text.substr(i, value.end - i), &decoded)) {
      return Bad();
    }
    if (key == "name") {
      if (have_name || decoded.empty()) return Bad();
      name = std::move(decoded);
      have_name = true;
    }
    i = value.end;
  }
}

Extent SkipValue(std::string_view text, size_t pos) {
  if (pos >= text.size()) return {Scan::kNeedMore, 0};
  const char c = text[pos];
  if (c == '"') return ScanString(text, pos);
  if (c == '{' || c == '[') {
    ExtentScanner scanner;
    const size_t used = scanner.Feed(text.substr(pos));
    return scanner.done() ? Extent{Scan::kDone, pos + used} : Extent{Scan::kNeedMore, 0};
  }
  size_t i = pos;
  auto scalar_byte = [](char b) {
    return (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || b == '-' ||
           b == '+' || b == '.';
  };
  while (i < text.size() && scalar_byte(text[i])) ++i;
  if (i == pos) return {Scan::kMalformed, 0};
  if (i == text.size()) return {Scan::kNeedMore, 0};
  if (!nlohmann::json::accept(text.substr(pos, i - pos))) return {Scan::kMalformed, 0};
  return {Scan::kDone, i};
}

Extent ParseCallTail(std::string_view full, size_t pos, std::string* name) {
  const bool capped = full.size() - pos > kMaxHeaderBytes;
  const std::string_view text = full.substr(0, std::min(full.size(), pos + kMaxHeaderBytes));
  const Extent need_more{capped ? Scan::kMalformed : Scan::kNeedMore, 0};
  const Extent bad{Scan::kMalformed, 0};
  size_t i = pos;
  for (;;) {
    i = SkipWs(text, i);
    if (i == text.size()) return need_more;
    if (text[i] == '}') return {Scan::kDone, i + 1};
    if (text[i] != ',') return bad;
    i = SkipWs(text, i + 1);
    if (i == text.size()) return need_more;
    if (text[i] != '"') return bad;
    const Extent key = ScanString(text, i);
    if (key.scan != Scan::kDone) return key.scan == Scan::kNeedMore ? need_more : bad;
    const std::string_view key_literal = text.substr(i, key.end - i);
    i = SkipWs(text, key.end);
    if (i == text.size()) return need_more;
    if (text[i] != ':') return bad;
    i = SkipWs(text, i + 1);
    const Extent value = SkipValue(text, i);
    if (value.scan != Scan::kDone) return value.scan == Scan::kNeedMore ? need_more : bad;
    std::string decoded_key;
    if (name != nullptr && DecodeString(key_literal, &decoded_key) && decoded_key == "name") {
      if (!name->empty() || text[i] != '"') return bad;
      if (!DecodeString(text.substr(i, value.end - i), name) || name->empty()) return bad;
    }
    i = value.end;
  }
}

size_t ExtentScanner::Feed(std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string_) {
      if (escape_) {
        escape_ = false;
      } else if (c == '\\') {
        escape_ = true;
      } else if (c == '"') {
        in_string_ = false;
      }
      continue;
    }
    if (c == '"') {
      in_string_ = true;
    } else if (c == '{' || c == '[') {
      ++depth_;
    } else if (c == '}' || c == ']') {
      if (--depth_ == 0) {
        done_ = true;
        return i + 1;
      }
    }
  }
  return text.size();
}

}  // namespace muse::chat::internal
