#include "models/qwen2_audio/qwen2_audio_config.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "models/config_json.h"
#include "models/nested_text_config.h"
#include "src/common/file_util.h"

namespace muse::models::qwen2_audio {
namespace {

using json = nlohmann::json;

constexpr const char* kArchitecture = "Qwen2AudioForConditionalGeneration";

using config_json::GetInt;
using config_json::GetString;
using config_json::Has;
using config_json::KeyError;

absl::StatusOr<AudioEncoderConfig> ParseAudio(const json& j) {
  const std::string w = "audio_config.";
  if (!j.is_object()) return KeyError("audio_config", "must be an object");
  std::string model_type = "qwen2_audio_encoder";
  RETURN_IF_ERROR(GetString(j, "model_type", w, &model_type));
  if (model_type != "qwen2_audio_encoder") {
    return KeyError(w + "model_type",
                    absl::StrCat("'", model_type, "' is not supported (qwen2_audio_encoder)"));
  }
  AudioEncoderConfig a;
  RETURN_IF_ERROR(GetInt(j, "d_model", w, &a.d_model));
  RETURN_IF_ERROR(GetInt(j, "encoder_layers", w, &a.encoder_layers));
  RETURN_IF_ERROR(GetInt(j, "encoder_attention_heads", w, &a.encoder_attention_heads));
  RETURN_IF_ERROR(GetInt(j, "encoder_ffn_dim", w, &a.encoder_ffn_dim));
  RETURN_IF_ERROR(GetInt(j, "num_mel_bins", w, &a.num_mel_bins));
  RETURN_IF_ERROR(GetInt(j, "max_source_positions", w, &a.max_source_positions));
  RETURN_IF_ERROR(GetString(j, "activation_function", w, &a.activation_function));
  for (auto [val, key] : {std::pair{a.d_model, "d_model"},
                          {a.encoder_layers, "encoder_layers"},
                          {a.encoder_attention_heads, "encoder_attention_heads"},
                          {a.encoder_ffn_dim, "encoder_ffn_dim"},
                          {a.num_mel_bins, "num_mel_bins"},
                          {a.max_source_positions, "max_source_positions"}}) {
    if (val <= 0) return KeyError(w + key, absl::StrCat("must be positive, got ", val));
  }
  if (a.d_model % a.encoder_attention_heads != 0) {
    return KeyError(w + "d_model",
                    absl::StrCat("(", a.d_model, ") must be divisible by encoder_attention_heads (",
                                 a.encoder_attention_heads, ")"));
  }
  if (a.activation_function != "gelu") {
    return KeyError(w + "activation_function",
                    absl::StrCat("'", a.activation_function, "' is not supported (gelu)"));
  }
  if (Has(j, "scale_embedding") && j.at("scale_embedding").is_boolean() &&
      j.at("scale_embedding").get<bool>()) {
    // HF's encoder computes embed_scale but never applies it; refuse rather than guess.
    return KeyError(w + "scale_embedding", "true is not supported");
  }
  return a;
}

// The decoder's config with its transformers class defaults filled in (nested_text_config.h).
// The composite's decoder is LLaVA's (default llama; mistral too).
absl::StatusOr<ModelConfig> ParseText(const json& t, bool muse) {
  if (muse) return ParseNestedTextConfig(t.dump(), "llama", {"llama", "mistral", "qwen2"});
  return ParseNestedTextConfig(t.dump(), "qwen2", {"qwen2", "llama"});
}

absl::StatusOr<Qwen2AudioConfig> ParseObject(const json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("config.json: top level must be an object");
  if (!Has(j, "architectures") || !j.at("architectures").is_array() ||
      j.at("architectures").empty() ||
      (j.at("architectures")[0] != kArchitecture &&
       j.at("architectures")[0] != config_json::kMuseArchitecture)) {
    return KeyError("architectures", absl::StrCat("must be [\"", kArchitecture, "\"] or [\"",
                                                  config_json::kMuseArchitecture, "\"]"));
  }
  const bool muse = j.at("architectures")[0] == config_json::kMuseArchitecture;
  Qwen2AudioConfig c;
  if (muse) c.weight_prefix = kMuseAudioPrefix;
  ASSIGN_OR_RETURN(c.audio,
                   ParseAudio(Has(j, "audio_config") ? j.at("audio_config") : json::object()));
  ASSIGN_OR_RETURN(c.text,
                   ParseText(Has(j, "text_config") ? j.at("text_config") : json::object(), muse));
  if (c.text.torch_dtype.empty() && Has(j, "torch_dtype") && j.at("torch_dtype").is_string()) {
    c.text.torch_dtype = j.at("torch_dtype").get<std::string>();
  }
  RETURN_IF_ERROR(GetInt(j, "audio_token_index", "", &c.audio_token_index));
  if (c.audio_token_index < 0 || c.audio_token_index >= c.text.vocab_size) {
    return KeyError("audio_token_index",
                    absl::StrCat("(", c.audio_token_index,
                                 ") must be a token id below text_config.vocab_size (",
                                 c.text.vocab_size, ")"));
  }
  return c;
}

}  // namespace

absl::StatusOr<Qwen2AudioConfig> ParseQwen2AudioConfig(const std::string& json_text) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("config.json is not valid JSON");
  try {
    return ParseObject(j);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: ", e.what()));
  }
}

absl::StatusOr<Qwen2AudioConfig> LoadQwen2AudioConfig(const std::string& model_dir) {
  ASSIGN_OR_RETURN(std::string text, muse::ReadFile(model_dir + "/config.json"));
  auto c = ParseQwen2AudioConfig(text);
  if (!c.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(model_dir, "/config.json: ", c.status().message()));
  }
  return c;
}

bool IsQwen2AudioModelDir(const std::string& model_dir) {
  auto text = muse::ReadFile(model_dir + "/config.json");
  if (!text.ok()) return false;
  json j = json::parse(*text, nullptr, false);
  return j.is_object() && j.contains("architectures") && j["architectures"].is_array() &&
         !j["architectures"].empty() &&
         (j["architectures"][0] == kArchitecture ||
          j["architectures"][0] == config_json::kMuseArchitecture);
}

std::string Qwen2AudioConfigToJson(const Qwen2AudioConfig& c) {
  json text = json::parse(ModelConfigToJson(c.text));
  json a;
  a["model_type"] = "qwen2_audio_encoder";
  a["d_model"] = c.audio.d_model;
  a["encoder_layers"] = c.audio.encoder_layers;
  a["encoder_attention_heads"] = c.audio.encoder_attention_heads;
  a["encoder_ffn_dim"] = c.audio.encoder_ffn_dim;
  a["num_mel_bins"] = c.audio.num_mel_bins;
  a["max_source_positions"] = c.audio.max_source_positions;
  a["activation_function"] = c.audio.activation_function;
  a["scale_embedding"] = false;
  json j;
  j["architectures"] = {kArchitecture};
  j["model_type"] = "qwen2_audio";
  j["audio_config"] = a;
  j["text_config"] = text;
  j["audio_token_index"] = c.audio_token_index;
  if (!c.text.torch_dtype.empty()) j["torch_dtype"] = c.text.torch_dtype;
  j["transformers_version"] = "4.45.0";
  return j.dump(2) + "\n";
}

TensorList ExpectedAudioTensors(const Qwen2AudioConfig& c) {
  const AudioEncoderConfig& a = c.audio;
  const int64_t D = a.d_model, F = a.encoder_ffn_dim, M = a.num_mel_bins;
  const std::string p = c.weight_prefix + kAudioPrefix;
  TensorList out;
  out.push_back({p + "conv1.weight", {D, M, 3}});
  out.push_back({p + "conv1.bias", {D}});
  out.push_back({p + "conv2.weight", {D, D, 3}});
  out.push_back({p + "conv2.bias", {D}});
  out.push_back({p + "embed_positions.weight", {a.max_source_positions, D}});
  for (int64_t i = 0; i < a.encoder_layers; ++i) {
    const std::string l = absl::StrCat(p, "layers.", i, ".");
    for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
      out.push_back({absl::StrCat(l, "self_attn.", proj, ".weight"), {D, D}});
      if (std::string(proj) != "k_proj") {
        out.push_back({absl::StrCat(l, "self_attn.", proj, ".bias"), {D}});
      }
    }
    for (const char* norm : {"self_attn_layer_norm", "final_layer_norm"}) {
      out.push_back({absl::StrCat(l, norm, ".weight"), {D}});
      out.push_back({absl::StrCat(l, norm, ".bias"), {D}});
    }
    out.push_back({l + "fc1.weight", {F, D}});
    out.push_back({l + "fc1.bias", {F}});
    out.push_back({l + "fc2.weight", {D, F}});
    out.push_back({l + "fc2.bias", {D}});
  }
  out.push_back({p + "layer_norm.weight", {D}});
  out.push_back({p + "layer_norm.bias", {D}});
  return out;
}

TensorList ExpectedAudioProjectorTensors(const Qwen2AudioConfig& c) {
  const std::string p = c.weight_prefix + kProjectorPrefix;
  return {{p + "linear.weight", {c.text.hidden_size, c.audio.d_model}},
          {p + "linear.bias", {c.text.hidden_size}}};
}

}  // namespace muse::models::qwen2_audio
