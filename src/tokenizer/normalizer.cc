#include "src/tokenizer/normalizer.h"

#include <nlohmann/json.hpp>
#include <vector>

#include "absl/strings/str_cat.h"
#include "src/common/status.h"
#include "src/tokenizer/json_util.h"
#include "src/tokenizer/regex.h"
#include "src/tokenizer/unicode_nfc.h"

namespace muse::tokenizer {
namespace {

class NfcNormalizer : public Normalizer {
 public:
  absl::Status Normalize(std::string& text) const override {
    if (!IsTriviallyNfc(text)) text = ToNfc(text);
    return absl::OkStatus();
  }
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prepend) : prepend_(std::move(prepend)) {}
  absl::Status Normalize(std::string& text) const override {
    // HF only prepends to non-empty strings.
    if (!text.empty()) text.insert(0, prepend_);
    return absl::OkStatus();
  }

 private:
  std::string prepend_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(StringOrRegex pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  absl::Status Normalize(std::string& text) const override {
    std::vector<std::pair<size_t, size_t>> matches;
    RETURN_IF_ERROR(pattern_.FindAll(text, matches));
    if (matches.empty()) return absl::OkStatus();
    std::string out;
    out.reserve(text.size() + matches.size() * content_.size());
    size_t prev = 0;
    for (auto [b, e] : matches) {
      out.append(text, prev, b - prev);
      out += content_;
      prev = e;
    }
    out.append(text, prev);
    text = std::move(out);
    return absl::OkStatus();
  }

 private:
  StringOrRegex pattern_;
  std::string content_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  absl::Status Normalize(std::string& text) const override {
    for (const auto& p : parts_) RETURN_IF_ERROR(p->Normalize(text));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> MakeNormalizer(const nlohmann::json& config) {
  ASSIGN_OR_RETURN(std::string type, GetString(config, "type", "normalizer"));
  if (type == "NFC") return std::make_unique<NfcNormalizer>();
  if (type == "Prepend") {
    ASSIGN_OR_RETURN(std::string prepend, GetString(config, "prepend", "Prepend normalizer"));
    return std::make_unique<PrependNormalizer>(std::move(prepend));
  }
  if (type == "Replace") {
    ASSIGN_OR_RETURN(StringOrRegex pattern, ParsePattern(config, "Replace normalizer"));
    ASSIGN_OR_RETURN(std::string content, GetString(config, "content", "Replace normalizer"));
    return std::make_unique<ReplaceNormalizer>(std::move(pattern), std::move(content));
  }
  if (type == "Sequence") {
    auto it = config.find("normalizers");
    if (it == config.end() || !it->is_array()) {
      return absl::InvalidArgumentError("Sequence normalizer: missing 'normalizers' array");
    }
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const auto& sub : *it) {
      ASSIGN_OR_RETURN(auto p, MakeNormalizer(sub));
      parts.push_back(std::move(p));
    }
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported normalizer type '", type, "'"));
}

}  // namespace muse::tokenizer
