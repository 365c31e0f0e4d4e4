#include "src/tokenizer/post_processor.h"

#include <nlohmann/json.hpp>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "src/common/status.h"
#include "src/tokenizer/json_util.h"

namespace muse::tokenizer {
namespace {

class TemplatePostProcessor : public PostProcessor {
 public:
  TemplatePostProcessor(std::vector<int32_t> prefix, std::vector<int32_t> suffix)
      : prefix_(std::move(prefix)), suffix_(std::move(suffix)) {}
  void Process(std::vector<int32_t>& ids, bool add_special_tokens) const override {
    if (!add_special_tokens) return;
    ids.insert(ids.begin(), prefix_.begin(), prefix_.end());
    ids.insert(ids.end(), suffix_.begin(), suffix_.end());
  }

 private:
  std::vector<int32_t> prefix_;  // special ids before $A
  std::vector<int32_t> suffix_;  // special ids after $A
};

// ByteLevel only adjusts offsets, which we do not track.
class NoopPostProcessor : public PostProcessor {
 public:
  void Process(std::vector<int32_t>&, bool) const override {}
};

class SequencePostProcessor : public PostProcessor {
 public:
  explicit SequencePostProcessor(std::vector<std::unique_ptr<PostProcessor>> parts)
      : parts_(std::move(parts)) {}
  void Process(std::vector<int32_t>& ids, bool add_special_tokens) const override {
    for (const auto& p : parts_) p->Process(ids, add_special_tokens);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

absl::StatusOr<std::unique_ptr<PostProcessor>> MakeTemplate(const nlohmann::json& j) {
  absl::flat_hash_map<std::string, std::vector<int32_t>> specials;
  if (auto st = j.find("special_tokens"); st != j.end() && st->is_object()) {
    for (auto it = st->begin(); it != st->end(); ++it) {
      auto ids = it.value().find("ids");
      if (ids == it.value().end() || !ids->is_array()) {
        return absl::InvalidArgumentError(
            absl::StrCat("TemplateProcessing: special token '", it.key(), "' has no ids"));
      }
      std::vector<int32_t> v;
      for (const auto& id : *ids) {
        if (!id.is_number_integer())
          return absl::InvalidArgumentError("TemplateProcessing: non-integer id");
        v.push_back(id.get<int32_t>());
      }
      specials[it.key()] = std::move(v);
    }
  }
  auto single = j.find("single");
  if (single == j.end() || !single->is_array()) {
    return absl::InvalidArgumentError("TemplateProcessing: missing 'single' template");
  }
  std::vector<int32_t> prefix, suffix;
  bool seen_a = false;
  for (const auto& piece : *single) {
    if (auto sp = piece.find("SpecialToken"); sp != piece.end()) {
      ASSIGN_OR_RETURN(std::string id, GetString(*sp, "id", "TemplateProcessing SpecialToken"));
      auto it = specials.find(id);
      if (it == specials.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("TemplateProcessing: '", id, "' not in special_tokens"));
      }
      auto& dst = seen_a ? suffix : prefix;
      dst.insert(dst.end(), it->second.begin(), it->second.end());
    } else if (auto seq = piece.find("Sequence"); seq != piece.end()) {
      ASSIGN_OR_RETURN(std::string id, GetString(*seq, "id", "TemplateProcessing Sequence"));
      if (id != "A" || seen_a) {
        return absl::InvalidArgumentError(
            "TemplateProcessing: single template must hold $A exactly once");
      }
      seen_a = true;
    } else {
      return absl::InvalidArgumentError("TemplateProcessing: unknown template piece");
    }
  }
  if (!seen_a) return absl::InvalidArgumentError("TemplateProcessing: single template lacks $A");
  return std::make_unique<TemplatePostProcessor>(std::move(prefix), std::move(suffix));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostProcessor>> MakePostProcessor(const nlohmann::json& config) {
  ASSIGN_OR_RETURN(std::string type, GetString(config, "type", "post_processor"));
  if (type == "TemplateProcessing") return MakeTemplate(config);
  if (type == "ByteLevel") return std::make_unique<NoopPostProcessor>();
  if (type == "Sequence") {
    auto it = config.find("processors");
    if (it == config.end() || !it->is_array()) {
      return absl::InvalidArgumentError("Sequence post_processor: missing 'processors' array");
    }
    std::vector<std::unique_ptr<PostProcessor>> parts;
    for (const auto& sub : *it) {
      ASSIGN_OR_RETURN(auto p, MakePostProcessor(sub));
      parts.push_back(std::move(p));
    }
    return std::make_unique<SequencePostProcessor>(std::move(parts));
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported post_processor type '", type, "'"));
}

}  // namespace muse::tokenizer
