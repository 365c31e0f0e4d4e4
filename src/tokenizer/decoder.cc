#include "src/tokenizer/decoder.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "src/common/status.h"
#include "src/tokenizer/byte_level.h"
#include "src/tokenizer/json_util.h"
#include "src/tokenizer/utf8.h"

namespace muse::tokenizer {
namespace {

class ByteLevelDecoder : public Decoder {
 public:
  void TokenBytes(std::string& token) const override {
    std::string bytes;
    for (size_t i = 0; i < token.size();) {
      const int b = CharToByte(DecodeUtf8(token, i));
      if (b < 0) return;  // a character outside the byte map: the token's UTF-8 as is (HF 0.22)
      bytes.push_back(static_cast<char>(b));
    }
    token = std::move(bytes);
  }
  absl::Status DecodeChain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const std::string& t : tokens) {
      // A token with any character outside the byte map contributes its UTF-8 as is (HF 0.22).
      const size_t mark = bytes.size();
      bool mapped = true;
      for (size_t i = 0; i < t.size();) {
        const int b = CharToByte(DecodeUtf8(t, i));
        if (b < 0) {
          mapped = false;
          break;
        }
        bytes.push_back(static_cast<char>(b));
      }
      if (!mapped) {
        bytes.resize(mark);
        bytes += t;
      }
    }
    tokens.assign(1, Utf8Lossy(bytes));
    return absl::OkStatus();
  }
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(StringOrRegex pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  absl::Status DecodeChain(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) RETURN_IF_ERROR(ReplaceIn(t));
    return absl::OkStatus();
  }
  void TokenBytes(std::string& token) const override {
    // Vocabulary strings are valid UTF-8, so FindAll cannot fail; on error the token stays as is.
    ReplaceIn(token).IgnoreError();
  }

 private:
  absl::Status ReplaceIn(std::string& t) const {
    std::vector<std::pair<size_t, size_t>> m;
    RETURN_IF_ERROR(pattern_.FindAll(t, m));
    if (m.empty()) return absl::OkStatus();
    std::string out;
    size_t prev = 0;
    for (auto [b, e] : m) {
      out.append(t, prev, b - prev);
      out += content_;
      prev = e;
    }
    out.append(t, prev);
    t = std::move(out);
    return absl::OkStatus();
  }

  StringOrRegex pattern_;
  std::string content_;
};

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class ByteFallbackDecoder : public Decoder {
 public:
  void TokenBytes(std::string& token) const override {
    if (token.size() == 6 && token.starts_with("<0x") && token[5] == '>') {
      const int hi = HexDigit(token[3]), lo = HexDigit(token[4]);
      if (hi >= 0 && lo >= 0) token.assign(1, static_cast<char>(hi * 16 + lo));
    }
  }
  absl::Status DecodeChain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (IsValidUtf8(pending)) {
        out.push_back(pending);
      } else {
        // One U+FFFD per byte token, as HF does.
        for (size_t i = 0; i < pending.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
      }
      pending.clear();
    };
    for (std::string& t : tokens) {
      if (t.size() == 6 && t.starts_with("<0x") && t[5] == '>') {
        const int hi = HexDigit(t[3]), lo = HexDigit(t[4]);
        if (hi >= 0 && lo >= 0) {
          pending.push_back(static_cast<char>(hi * 16 + lo));
          continue;
        }
      }
      flush();
      out.push_back(std::move(t));
    }
    flush();
    tokens = std::move(out);
    return absl::OkStatus();
  }
};

class FuseDecoder : public Decoder {
 public:
  void TokenBytes(std::string&) const override {}
  absl::Status DecodeChain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.clear();
    tokens.push_back(std::move(all));
    return absl::OkStatus();
  }
};

class StripDecoder : public Decoder {
 public:
  // Strip only ever removes the text's leading / trailing characters (Llama 2's space after the
  // prompt), never bytes in the middle.
  void TokenBytes(std::string&) const override {}
  StripDecoder(std::string content, size_t start, size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  absl::Status DecodeChain(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) {
      size_t b = 0;
      for (size_t k = 0; k < start_ && t.compare(b, content_.size(), content_) == 0 && b < t.size();
           ++k) {
        b += content_.size();
      }
      size_t e = t.size();
      for (size_t k = 0; k < stop_ && e >= b + content_.size() &&
                         t.compare(e - content_.size(), content_.size(), content_) == 0;
           ++k) {
        e -= content_.size();
      }
      t = t.substr(b, e - b);
    }
    return absl::OkStatus();
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void TokenBytes(std::string& token) const override {
    std::string out;
    for (size_t p = 0; p < token.size();) {
      if (token.compare(p, replacement_.size(), replacement_) == 0) {
        out += ' ';
        p += replacement_.size();
      } else {
        out += token[p++];
      }
    }
    token = std::move(out);
  }
  absl::Status DecodeChain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& t = tokens[i];
      for (size_t p = 0; p < t.size();) {
        if (t.compare(p, replacement_.size(), replacement_) == 0) {
          // HF drops every replacement char of the first token when a prefix was prepended.
          if (!(i == 0 && strip_first_)) out += ' ';
          p += replacement_.size();
        } else {
          out += t[p++];
        }
      }
      tokens[i] = std::move(out);
    }
    return absl::OkStatus();
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

class SequenceDecoder : public Decoder {
 public:
  void TokenBytes(std::string& token) const override {
    for (const auto& p : parts_) p->TokenBytes(token);
  }
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts)
      : parts_(std::move(parts)) {}
  absl::Status DecodeChain(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts_) RETURN_IF_ERROR(p->DecodeChain(tokens));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

absl::StatusOr<size_t> GetCount(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_unsigned()) {
    return absl::InvalidArgumentError(absl::StrCat("Strip decoder: '", key, "' must be a count"));
  }
  return it->get<size_t>();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Decoder>> MakeDecoder(const nlohmann::json& config) {
  ASSIGN_OR_RETURN(std::string type, GetString(config, "type", "decoder"));
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Replace") {
    ASSIGN_OR_RETURN(StringOrRegex pattern, ParsePattern(config, "Replace decoder"));
    ASSIGN_OR_RETURN(std::string content, GetString(config, "content", "Replace decoder"));
    return std::make_unique<ReplaceDecoder>(std::move(pattern), std::move(content));
  }
  if (type == "Strip") {
    ASSIGN_OR_RETURN(std::string content, GetString(config, "content", "Strip decoder"));
    ASSIGN_OR_RETURN(size_t start, GetCount(config, "start"));
    ASSIGN_OR_RETURN(size_t stop, GetCount(config, "stop"));
    return std::make_unique<StripDecoder>(std::move(content), start, stop);
  }
  if (type == "Metaspace") {
    ASSIGN_OR_RETURN(std::string replacement,
                     GetString(config, "replacement", "Metaspace decoder"));
    bool strip_first = true;
    if (auto it = config.find("prepend_scheme"); it != config.end() && it->is_string()) {
      strip_first = it->get<std::string>() != "never";
    } else {
      ASSIGN_OR_RETURN(strip_first, GetBool(config, "add_prefix_space", true, "Metaspace decoder"));
    }
    return std::make_unique<MetaspaceDecoder>(std::move(replacement), strip_first);
  }
  if (type == "Sequence") {
    auto it = config.find("decoders");
    if (it == config.end() || !it->is_array()) {
      return absl::InvalidArgumentError("Sequence decoder: missing 'decoders' array");
    }
    std::vector<std::unique_ptr<Decoder>> parts;
    for (const auto& sub : *it) {
      ASSIGN_OR_RETURN(auto p, MakeDecoder(sub));
      parts.push_back(std::move(p));
    }
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported decoder type '", type, "'"));
}

}  // namespace muse::tokenizer
