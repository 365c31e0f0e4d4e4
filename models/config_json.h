// Reading keys of a config.json object with errors that name the key ("config.json: key
// 'vision_config.hidden_size' must be an integer"). Absent and null keys (HF writes both) leave
// the default in place. Shared by the multimodal wrappers' config parsers (LLaVA, Qwen2-Audio).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/str_cat.h"
#include "src/common/status.h"

namespace muse::models::config_json {

// The tri-modal composite (models/muse/muse_config.h): LLaVA's vision side and Qwen2-Audio's audio
// side over one decoder. The LLaVA and Qwen2-Audio parsers read their own side of it.
inline constexpr const char* kMuseArchitecture = "MuseForConditionalGeneration";

inline absl::Status KeyError(const std::string& key, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: key '", key, "' ", what));
}

inline bool Has(const nlohmann::json& j, const char* key) {
  return j.contains(key) && !j.at(key).is_null();
}

// `where` prefixes the key in errors (e.g. "audio_config.").
inline absl::Status GetInt(const nlohmann::json& j, const char* key, const std::string& where,
                           int64_t* out) {
  if (!Has(j, key)) return absl::OkStatus();
  if (!j.at(key).is_number_integer()) return KeyError(where + key, "must be an integer");
  *out = j.at(key).get<int64_t>();
  return absl::OkStatus();
}

inline absl::Status GetString(const nlohmann::json& j, const char* key, const std::string& where,
                              std::string* out) {
  if (!Has(j, key)) return absl::OkStatus();
  if (!j.at(key).is_string()) return KeyError(where + key, "must be a string");
  *out = j.at(key).get<std::string>();
  return absl::OkStatus();
}

}  // namespace muse::models::config_json
