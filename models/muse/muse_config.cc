#include "models/muse/muse_config.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "models/config_json.h"
#include "src/common/file_util.h"

namespace muse::models::muse_composite {
namespace {

using json = nlohmann::json;
using config_json::Has;
using config_json::KeyError;

absl::StatusOr<MuseConfig> ParseObject(const std::string& json_text) {
  const json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("config.json is not valid JSON");
  if (!j.is_object()) return absl::InvalidArgumentError("config.json: top level must be an object");
  if (!Has(j, "architectures") || !j.at("architectures").is_array() ||
      j.at("architectures").empty() || j.at("architectures")[0] != config_json::kMuseArchitecture) {
    return KeyError("architectures",
                    absl::StrCat("must be [\"", config_json::kMuseArchitecture, "\"]"));
  }
  for (const char* key : {"text_config", "vision_config", "audio_config"}) {
    if (!Has(j, key)) return KeyError(key, "is required");
    if (!j.at(key).is_object()) return KeyError(key, "must be an object");
  }
  for (const char* key : {"image_token_index", "audio_token_index"}) {
    if (!Has(j, key)) return KeyError(key, "is required");
  }
  MuseConfig c;
  ASSIGN_OR_RETURN(c.vision, llava::ParseLlavaConfig(json_text));
  ASSIGN_OR_RETURN(c.audio, qwen2_audio::ParseQwen2AudioConfig(json_text));
  if (c.audio.audio_token_index == c.vision.image_token_index) {
    return KeyError("audio_token_index", absl::StrCat("(", c.audio.audio_token_index,
                                                      ") must differ from image_token_index"));
  }
  return c;
}

}  // namespace

absl::StatusOr<MuseConfig> ParseMuseConfig(const std::string& json_text) {
  try {
    return ParseObject(json_text);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: ", e.what()));
  }
}

absl::StatusOr<MuseConfig> LoadMuseConfig(const std::string& model_dir) {
  ASSIGN_OR_RETURN(std::string text, muse::ReadFile(model_dir + "/config.json"));
  auto c = ParseMuseConfig(text);
  if (!c.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(model_dir, "/config.json: ", c.status().message()));
  }
  return c;
}

bool IsMuseModelDir(const std::string& model_dir) {
  auto text = muse::ReadFile(model_dir + "/config.json");
  if (!text.ok()) return false;
  const json j = json::parse(*text, nullptr, false);
  return j.is_object() && j.contains("architectures") && j["architectures"].is_array() &&
         !j["architectures"].empty() && j["architectures"][0] == config_json::kMuseArchitecture;
}

std::string MuseConfigToJson(const MuseConfig& c) {
  // LLaVA's keys, then Qwen2-Audio's audio keys on top (text_config is the LLaVA side's).
  json j = json::parse(llava::LlavaConfigToJson(c.vision));
  const json a = json::parse(qwen2_audio::Qwen2AudioConfigToJson(c.audio));
  j["architectures"] = {config_json::kMuseArchitecture};
  j["model_type"] = "muse";
  j["audio_config"] = a.at("audio_config");
  j["audio_token_index"] = c.audio.audio_token_index;
  return j.dump(2) + "\n";
}

absl::StatusOr<audio::WhisperFeatureConfig> LoadAudioFeatureConfig(const std::string& model_dir) {
  const std::string path = model_dir + "/preprocessor_config.json";
  ASSIGN_OR_RETURN(std::string text, muse::ReadFile(path));
  if (IsMuseModelDir(model_dir)) {
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object())
      return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
    j.erase("do_normalize");
    text = j.dump();
  }
  auto c = audio::ParseWhisperFeatureConfig(text);
  if (!c.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", c.status().message()));
  return c;
}

}  // namespace muse::models::muse_composite
