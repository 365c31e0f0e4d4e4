#include "src/tokenizer/pre_tokenizer.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "src/common/status.h"
#include "src/tokenizer/byte_level.h"
#include "src/tokenizer/json_util.h"
#include "src/tokenizer/utf8.h"

namespace muse::tokenizer {
namespace {

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

absl::StatusOr<Behavior> ParseBehavior(const std::string& s) {
  if (s == "Removed") return Behavior::kRemoved;
  if (s == "Isolated") return Behavior::kIsolated;
  if (s == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (s == "MergedWithNext") return Behavior::kMergedWithNext;
  if (s == "Contiguous") return Behavior::kContiguous;
  return absl::InvalidArgumentError(absl::StrCat("unsupported split behavior '", s, "'"));
}

struct Span {
  size_t b, e;
  bool flag;  // is_match before combining, "remove" after
};

// Mirrors HF NormalizedString::split: matches + gaps cover the text, then the behavior combines
// them.
void SplitByMatches(const Piece& piece, const std::vector<std::pair<size_t, size_t>>& matches,
                    Behavior behavior, bool invert, std::vector<Piece>& out) {
  const std::string& t = piece.text;
  std::vector<Span> spans;
  spans.reserve(matches.size() * 2 + 1);
  size_t prev = 0;
  for (auto [b, e] : matches) {
    if (prev != b) spans.push_back({prev, b, invert});
    spans.push_back({b, e, !invert});
    prev = e;
  }
  if (prev != t.size()) spans.push_back({prev, t.size(), invert});

  std::vector<Span> combined;
  combined.reserve(spans.size());
  switch (behavior) {
    case Behavior::kIsolated:
      for (auto s : spans) combined.push_back({s.b, s.e, false});
      break;
    case Behavior::kRemoved:
      combined = spans;
      break;
    case Behavior::kContiguous: {
      bool prev_match = false;
      for (auto s : spans) {
        if (s.flag == prev_match && !combined.empty()) {
          combined.back().e = s.e;
        } else {
          combined.push_back({s.b, s.e, false});
        }
        prev_match = s.flag;
      }
      break;
    }
    case Behavior::kMergedWithPrevious: {
      bool prev_match = false;
      for (auto s : spans) {
        if (s.flag && !prev_match && !combined.empty()) {
          combined.back().e = s.e;
        } else {
          combined.push_back({s.b, s.e, false});
        }
        prev_match = s.flag;
      }
      break;
    }
    case Behavior::kMergedWithNext: {
      bool prev_match = false;
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->flag && !prev_match && !combined.empty()) {
          combined.back().b = it->b;
        } else {
          combined.push_back({it->b, it->e, false});
        }
        prev_match = it->flag;
      }
      std::reverse(combined.begin(), combined.end());
      break;
    }
  }
  for (const auto& s : combined) {
    if (s.flag || s.b == s.e) continue;
    out.push_back(Piece{t.substr(s.b, s.e - s.b), piece.at_start && s.b == 0});
  }
}

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(StringOrRegex pattern, Behavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  absl::Status PreTokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size() * 4);
    std::vector<std::pair<size_t, size_t>> matches;
    for (const Piece& p : pieces) {
      matches.clear();
      RETURN_IF_ERROR(pattern_.FindAll(p.text, matches));
      SplitByMatches(p, matches, behavior_, invert_, out);
    }
    pieces = std::move(out);
    return absl::OkStatus();
  }

 private:
  StringOrRegex pattern_;
  Behavior behavior_;
  bool invert_;
};

// GPT-2's split regex, used by ByteLevel when use_regex is set.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<PreTokenizer> regex_split)
      : add_prefix_space_(add_prefix_space), regex_split_(std::move(regex_split)) {}
  absl::Status PreTokenize(std::vector<Piece>& pieces) const override {
    if (add_prefix_space_) {
      for (Piece& p : pieces) {
        if (p.text.empty() || p.text[0] != ' ') p.text.insert(p.text.begin(), ' ');
      }
    }
    if (regex_split_) RETURN_IF_ERROR(regex_split_->PreTokenize(pieces));
    std::string mapped;
    for (Piece& p : pieces) {
      mapped.clear();
      AppendByteLevel(p.text, mapped);
      p.text.swap(mapped);
    }
    return absl::OkStatus();
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<PreTokenizer> regex_split_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}
  absl::Status PreTokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    std::vector<std::pair<size_t, size_t>> matches;
    for (Piece& p : pieces) {
      std::string r;
      r.reserve(p.text.size());
      for (char c : p.text) {
        if (c == ' ') {
          r += replacement_;
        } else {
          r += c;
        }
      }
      const bool starts = r.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts &&
          (scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && p.at_start))) {
        r.insert(0, replacement_);
      }
      Piece np{std::move(r), p.at_start};
      if (!split_) {
        if (!np.text.empty()) out.push_back(std::move(np));
        continue;
      }
      matches.clear();
      for (size_t pos = np.text.find(replacement_); pos != std::string::npos;
           pos = np.text.find(replacement_, pos + replacement_.size())) {
        matches.emplace_back(pos, pos + replacement_.size());
      }
      SplitByMatches(np, matches, Behavior::kMergedWithNext, false, out);
    }
    pieces = std::move(out);
    return absl::OkStatus();
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  absl::Status PreTokenize(std::vector<Piece>& pieces) const override {
    for (const auto& p : parts_) RETURN_IF_ERROR(p->PreTokenize(pieces));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> MakePreTokenizer(const nlohmann::json& config) {
  ASSIGN_OR_RETURN(std::string type, GetString(config, "type", "pre_tokenizer"));
  if (type == "Split") {
    ASSIGN_OR_RETURN(StringOrRegex pattern, ParsePattern(config, "Split pre_tokenizer"));
    ASSIGN_OR_RETURN(std::string behavior_name,
                     GetString(config, "behavior", "Split pre_tokenizer"));
    ASSIGN_OR_RETURN(Behavior behavior, ParseBehavior(behavior_name));
    ASSIGN_OR_RETURN(bool invert, GetBool(config, "invert", false, "Split pre_tokenizer"));
    return std::make_unique<SplitPreTokenizer>(std::move(pattern), behavior, invert);
  }
  if (type == "ByteLevel") {
    ASSIGN_OR_RETURN(bool add_prefix_space, GetBool(config, "add_prefix_space", true, "ByteLevel"));
    ASSIGN_OR_RETURN(bool use_regex, GetBool(config, "use_regex", true, "ByteLevel"));
    std::unique_ptr<PreTokenizer> split;
    if (use_regex) {
      ASSIGN_OR_RETURN(StringOrRegex pattern, StringOrRegex::FromRegex(kGpt2Pattern));
      split = std::make_unique<SplitPreTokenizer>(std::move(pattern), Behavior::kIsolated, false);
    }
    return std::make_unique<ByteLevelPreTokenizer>(add_prefix_space, std::move(split));
  }
  if (type == "Metaspace") {
    ASSIGN_OR_RETURN(std::string replacement, GetString(config, "replacement", "Metaspace"));
    PrependScheme scheme = PrependScheme::kAlways;
    if (auto it = config.find("prepend_scheme"); it != config.end() && it->is_string()) {
      const std::string s = it->get<std::string>();
      if (s == "always") {
        scheme = PrependScheme::kAlways;
      } else if (s == "first") {
        scheme = PrependScheme::kFirst;
      } else if (s == "never") {
        scheme = PrependScheme::kNever;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("Metaspace: unknown prepend_scheme '", s, "'"));
      }
    } else {
      // Older files carry add_prefix_space instead of prepend_scheme.
      ASSIGN_OR_RETURN(bool add_prefix_space,
                       GetBool(config, "add_prefix_space", true, "Metaspace"));
      scheme = add_prefix_space ? PrependScheme::kAlways : PrependScheme::kNever;
    }
    ASSIGN_OR_RETURN(bool split, GetBool(config, "split", true, "Metaspace"));
    return std::make_unique<MetaspacePreTokenizer>(std::move(replacement), scheme, split);
  }
  if (type == "Sequence") {
    auto it = config.find("pretokenizers");
    if (it == config.end() || !it->is_array()) {
      return absl::InvalidArgumentError("Sequence pre_tokenizer: missing 'pretokenizers' array");
    }
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const auto& sub : *it) {
      ASSIGN_OR_RETURN(auto p, MakePreTokenizer(sub));
      parts.push_back(std::move(p));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported pre_tokenizer type '", type, "'"));
}

}  // namespace muse::tokenizer
