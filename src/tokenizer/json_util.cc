#include "src/tokenizer/json_util.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace muse::tokenizer {

absl::StatusOr<std::string> GetString(const nlohmann::json& j, const char* key, const char* what) {
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(what, ": expected an object"));
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": missing string field '", key, "'"));
  }
  return it->get<std::string>();
}

absl::StatusOr<bool> GetBool(const nlohmann::json& j, const char* key, bool def, const char* what) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_boolean()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": field '", key, "' must be a boolean"));
  }
  return it->get<bool>();
}

StringOrRegex StringOrRegex::Literal(std::string s) {
  StringOrRegex p;
  p.literal_ = std::move(s);
  return p;
}

absl::StatusOr<StringOrRegex> StringOrRegex::FromRegex(std::string_view pattern) {
  auto re = Regex::Compile(pattern);
  if (!re.ok()) return re.status();
  StringOrRegex p;
  p.regex_ = std::shared_ptr<const Regex>(std::move(*re));
  return p;
}

absl::Status StringOrRegex::FindAll(std::string_view text,
                                    std::vector<std::pair<size_t, size_t>>& out) const {
  if (regex_) return regex_->FindAll(text, out);
  if (literal_.empty()) return absl::OkStatus();  // HF: an empty pattern never matches
  for (size_t pos = text.find(literal_); pos != std::string_view::npos;
       pos = text.find(literal_, pos + literal_.size())) {
    out.emplace_back(pos, pos + literal_.size());
  }
  return absl::OkStatus();
}

absl::StatusOr<StringOrRegex> ParsePattern(const nlohmann::json& j, const char* what) {
  auto it = j.find("pattern");
  if (it == j.end() || !it->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": missing 'pattern' object"));
  }
  if (auto s = it->find("String"); s != it->end() && s->is_string()) {
    return StringOrRegex::Literal(s->get<std::string>());
  }
  if (auto r = it->find("Regex"); r != it->end() && r->is_string()) {
    return StringOrRegex::FromRegex(r->get<std::string>());
  }
  return absl::InvalidArgumentError(absl::StrCat(what, ": pattern must be {String} or {Regex}"));
}

}  // namespace muse::tokenizer
