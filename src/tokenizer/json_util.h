// Small helpers for reading tokenizer.json objects with Status errors instead of exceptions.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "src/tokenizer/regex.h"

namespace muse::tokenizer {

absl::StatusOr<std::string> GetString(const nlohmann::json& j, const char* key, const char* what);
// Missing or null keys give `def`; a wrong type is an error.
absl::StatusOr<bool> GetBool(const nlohmann::json& j, const char* key, bool def, const char* what);

// A {"String": s} or {"Regex": r} pattern as used by Split, Replace.
class StringOrRegex {
 public:
  static StringOrRegex Literal(std::string s);
  static absl::StatusOr<StringOrRegex> FromRegex(std::string_view pattern);
  // Non-overlapping matches (begin, end) in valid UTF-8 `text`.
  absl::Status FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;

 private:
  std::string literal_;
  std::shared_ptr<const Regex> regex_;
};

// Reads j["pattern"] as a StringOrRegex.
absl::StatusOr<StringOrRegex> ParsePattern(const nlohmann::json& j, const char* what);

}  // namespace muse::tokenizer
