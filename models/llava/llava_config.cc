#include "models/llava/llava_config.h"

#include <nlohmann/json.hpp>

#include "models/config_json.h"
#include "models/nested_text_config.h"
#include "src/common/file_util.h"

namespace muse::models::llava {
namespace {

using json = nlohmann::json;

using config_json::GetInt;
using config_json::Has;
using config_json::KeyError;

absl::Status Positive(int64_t v, const std::string& key) {
  if (v <= 0) return KeyError(key, absl::StrCat("must be positive, got ", v));
  return absl::OkStatus();
}

absl::StatusOr<VisionConfig> ParseVision(const json& j) {
  const std::string w = "vision_config.";
  VisionConfig v;
  std::string model_type = "clip_vision_model";
  if (Has(j, "model_type")) {
    if (!j.at("model_type").is_string()) return KeyError(w + "model_type", "must be a string");
    model_type = j.at("model_type").get<std::string>();
  }
  if (model_type == "clip_vision_model") {
    // transformers' LlavaConfig default vision tower when vision_config is absent is ViT-L/14-336;
    // a given clip_vision_model config falls back to CLIPVisionConfig's defaults.
    if (!j.empty())
      v = VisionConfig{VisionArch::kClip, 768, 3072, 12, 12, 3, 224, 32, 1e-5, "quick_gelu"};
  } else if (model_type == "siglip_vision_model") {
    v = VisionConfig{VisionArch::kSiglip, 768, 3072, 12, 12, 3, 224, 16, 1e-6, "gelu_pytorch_tanh"};
  } else {
    return KeyError(w + "model_type", absl::StrCat("'", model_type,
                                                   "' is not supported "
                                                   "(clip_vision_model, siglip_vision_model)"));
  }
  RETURN_IF_ERROR(GetInt(j, "hidden_size", w, &v.hidden_size));
  RETURN_IF_ERROR(GetInt(j, "intermediate_size", w, &v.intermediate_size));
  RETURN_IF_ERROR(GetInt(j, "num_hidden_layers", w, &v.num_hidden_layers));
  RETURN_IF_ERROR(GetInt(j, "num_attention_heads", w, &v.num_attention_heads));
  RETURN_IF_ERROR(GetInt(j, "num_channels", w, &v.num_channels));
  RETURN_IF_ERROR(GetInt(j, "image_size", w, &v.image_size));
  RETURN_IF_ERROR(GetInt(j, "patch_size", w, &v.patch_size));
  if (Has(j, "layer_norm_eps")) {
    if (!j.at("layer_norm_eps").is_number())
      return KeyError(w + "layer_norm_eps", "must be a number");
    v.layer_norm_eps = j.at("layer_norm_eps").get<double>();
  }
  if (Has(j, "hidden_act")) {
    if (!j.at("hidden_act").is_string()) return KeyError(w + "hidden_act", "must be a string");
    v.hidden_act = j.at("hidden_act").get<std::string>();
  }
  for (auto [val, key] : {std::pair{v.hidden_size, "hidden_size"},
                          {v.intermediate_size, "intermediate_size"},
                          {v.num_hidden_layers, "num_hidden_layers"},
                          {v.num_attention_heads, "num_attention_heads"},
                          {v.image_size, "image_size"},
                          {v.patch_size, "patch_size"}}) {
    RETURN_IF_ERROR(Positive(val, w + key));
  }
  if (v.num_channels != 3) return KeyError(w + "num_channels", "must be 3 (RGB)");
  if (v.hidden_size % v.num_attention_heads != 0) {
    return KeyError(w + "hidden_size",
                    absl::StrCat("(", v.hidden_size, ") must be divisible by num_attention_heads (",
                                 v.num_attention_heads, ")"));
  }
  if (v.patch_size > v.image_size) return KeyError(w + "patch_size", "must not exceed image_size");
  if (v.hidden_act != "quick_gelu" && v.hidden_act != "gelu_pytorch_tanh" &&
      v.hidden_act != "gelu") {
    return KeyError(w + "hidden_act", absl::StrCat("'", v.hidden_act,
                                                   "' is not supported "
                                                   "(quick_gelu, gelu_pytorch_tanh, gelu)"));
  }
  return v;
}

// The decoder's config with its transformers class defaults filled in (nested_text_config.h).
absl::StatusOr<ModelConfig> ParseText(const json& t) {
  return ParseNestedTextConfig(t.dump(), "llama", {"llama", "mistral", "qwen2"});
}

absl::StatusOr<LlavaConfig> ParseObject(const json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("config.json: top level must be an object");
  if (!Has(j, "architectures") || !j.at("architectures").is_array() ||
      j.at("architectures").empty() ||
      (j.at("architectures")[0] != "LlavaForConditionalGeneration" &&
       j.at("architectures")[0] != config_json::kMuseArchitecture)) {
    return KeyError("architectures",
                    absl::StrCat("must be [\"LlavaForConditionalGeneration\"] or [\"",
                                 config_json::kMuseArchitecture, "\"]"));
  }
  LlavaConfig c;
  ASSIGN_OR_RETURN(c.vision,
                   ParseVision(Has(j, "vision_config") ? j.at("vision_config") : json::object()));
  ASSIGN_OR_RETURN(c.text, ParseText(Has(j, "text_config") ? j.at("text_config") : json::object()));
  // LLaVA checkpoints inherit the decoder's torch_dtype at the top level.
  if (c.text.torch_dtype.empty() && Has(j, "torch_dtype") && j.at("torch_dtype").is_string()) {
    c.text.torch_dtype = j.at("torch_dtype").get<std::string>();
  }
  // Older configs spell it image_token_id.
  RETURN_IF_ERROR(GetInt(j, "image_token_id", "", &c.image_token_index));
  RETURN_IF_ERROR(GetInt(j, "image_token_index", "", &c.image_token_index));
  if (c.image_token_index < 0 || c.image_token_index >= c.text.vocab_size) {
    return KeyError("image_token_index",
                    absl::StrCat("(", c.image_token_index,
                                 ") must be a token id below text_config.vocab_size (",
                                 c.text.vocab_size, ")"));
  }
  if (Has(j, "vision_feature_layer")) {
    if (j.at("vision_feature_layer").is_array()) {
      return KeyError("vision_feature_layer", "lists of layers are not supported");
    }
    RETURN_IF_ERROR(GetInt(j, "vision_feature_layer", "", &c.vision_feature_layer));
  }
  const int64_t L = c.vision.num_hidden_layers;
  if (c.vision_feature_layer < -(L + 1) || c.vision_feature_layer > L) {
    return KeyError("vision_feature_layer",
                    absl::StrCat("(", c.vision_feature_layer, ") must index hidden_states of ",
                                 L + 1, " entries"));
  }
  if (Has(j, "vision_feature_select_strategy")) {
    if (!j.at("vision_feature_select_strategy").is_string()) {
      return KeyError("vision_feature_select_strategy", "must be a string");
    }
    c.vision_feature_select_strategy = j.at("vision_feature_select_strategy").get<std::string>();
  }
  if (c.vision_feature_select_strategy != "default" && c.vision_feature_select_strategy != "full") {
    return KeyError(
        "vision_feature_select_strategy",
        absl::StrCat("'", c.vision_feature_select_strategy, "' is not one of default, full"));
  }
  if (Has(j, "projector_hidden_act")) {
    if (!j.at("projector_hidden_act").is_string())
      return KeyError("projector_hidden_act", "must be a string");
    c.projector_hidden_act = j.at("projector_hidden_act").get<std::string>();
  }
  if (c.projector_hidden_act != "gelu") {
    return KeyError("projector_hidden_act",
                    absl::StrCat("'", c.projector_hidden_act, "' is not supported (gelu)"));
  }
  if (Has(j, "multimodal_projector_bias")) {
    if (!j.at("multimodal_projector_bias").is_boolean())
      return KeyError("multimodal_projector_bias", "must be a boolean");
    c.multimodal_projector_bias = j.at("multimodal_projector_bias").get<bool>();
  }
  if (c.num_image_tokens() <= 0) {
    return KeyError("vision_feature_select_strategy", "leaves no image tokens");
  }
  return c;
}

}  // namespace

int64_t LlavaConfig::feature_layer_index() const {
  return vision_feature_layer < 0 ? vision.num_hidden_layers + 1 + vision_feature_layer
                                  : vision_feature_layer;
}

int64_t LlavaConfig::num_image_tokens() const {
  // As HF: "default" drops the first token (CLIP's class token; for SigLIP the first patch).
  return vision.num_positions() - (vision_feature_select_strategy == "default" ? 1 : 0);
}

absl::StatusOr<LlavaConfig> ParseLlavaConfig(const std::string& json_text) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("config.json is not valid JSON");
  try {
    return ParseObject(j);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: ", e.what()));
  }
}

absl::StatusOr<LlavaConfig> LoadLlavaConfig(const std::string& model_dir) {
  ASSIGN_OR_RETURN(std::string text, muse::ReadFile(model_dir + "/config.json"));
  auto c = ParseLlavaConfig(text);
  if (!c.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(model_dir, "/config.json: ", c.status().message()));
  }
  return c;
}

bool IsLlavaModelDir(const std::string& model_dir) {
  auto text = muse::ReadFile(model_dir + "/config.json");
  if (!text.ok()) return false;
  json j = json::parse(*text, nullptr, false);
  return j.is_object() && j.contains("architectures") && j["architectures"].is_array() &&
         !j["architectures"].empty() &&
         (j["architectures"][0] == "LlavaForConditionalGeneration" ||
          j["architectures"][0] == config_json::kMuseArchitecture);
}

std::string LlavaConfigToJson(const LlavaConfig& c) {
  json text = json::parse(ModelConfigToJson(c.text));
  json v;
  const bool clip = c.vision.arch == VisionArch::kClip;
  v["model_type"] = clip ? "clip_vision_model" : "siglip_vision_model";
  v["hidden_size"] = c.vision.hidden_size;
  v["intermediate_size"] = c.vision.intermediate_size;
  v["num_hidden_layers"] = c.vision.num_hidden_layers;
  v["num_attention_heads"] = c.vision.num_attention_heads;
  v["num_channels"] = c.vision.num_channels;
  v["image_size"] = c.vision.image_size;
  v["patch_size"] = c.vision.patch_size;
  v["layer_norm_eps"] = c.vision.layer_norm_eps;
  v["hidden_act"] = c.vision.hidden_act;
  json j;
  j["architectures"] = {"LlavaForConditionalGeneration"};
  j["model_type"] = "llava";
  j["vision_config"] = v;
  j["text_config"] = text;
  j["image_token_index"] = c.image_token_index;
  j["vision_feature_layer"] = c.vision_feature_layer;
  j["vision_feature_select_strategy"] = c.vision_feature_select_strategy;
  j["projector_hidden_act"] = c.projector_hidden_act;
  j["multimodal_projector_bias"] = c.multimodal_projector_bias;
  if (!c.text.torch_dtype.empty()) j["torch_dtype"] = c.text.torch_dtype;
  j["transformers_version"] = "4.44.0";
  return j.dump(2) + "\n";
}

TensorList ExpectedVisionTensors(const LlavaConfig& c, bool all) {
  const VisionConfig& v = c.vision;
  const int64_t H = v.hidden_size, I = v.intermediate_size, p = v.patch_size;
  const std::string e = std::string(kVisionPrefix) + "embeddings.";
  TensorList out;
  out.push_back({e + "patch_embedding.weight", {H, v.num_channels, p, p}});
  if (!v.has_class_token()) out.push_back({e + "patch_embedding.bias", {H}});
  if (v.has_class_token()) out.push_back({e + "class_embedding", {H}});
  out.push_back({e + "position_embedding.weight", {v.num_positions(), H}});
  if (v.arch == VisionArch::kClip) {
    out.push_back({std::string(kVisionPrefix) + "pre_layrnorm.weight", {H}});
    out.push_back({std::string(kVisionPrefix) + "pre_layrnorm.bias", {H}});
  }
  const int64_t layers = all ? v.num_hidden_layers : c.feature_layer_index();
  for (int64_t i = 0; i < layers; ++i) {
    const std::string l = absl::StrCat(kVisionPrefix, "encoder.layers.", i, ".");
    for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
      out.push_back({absl::StrCat(l, "self_attn.", proj, ".weight"), {H, H}});
      out.push_back({absl::StrCat(l, "self_attn.", proj, ".bias"), {H}});
    }
    for (const char* norm : {"layer_norm1", "layer_norm2"}) {
      out.push_back({absl::StrCat(l, norm, ".weight"), {H}});
      out.push_back({absl::StrCat(l, norm, ".bias"), {H}});
    }
    out.push_back({l + "mlp.fc1.weight", {I, H}});
    out.push_back({l + "mlp.fc1.bias", {I}});
    out.push_back({l + "mlp.fc2.weight", {H, I}});
    out.push_back({l + "mlp.fc2.bias", {H}});
  }
  if (all) {
    out.push_back({std::string(kVisionPrefix) + "post_layernorm.weight", {H}});
    out.push_back({std::string(kVisionPrefix) + "post_layernorm.bias", {H}});
  }
  return out;
}

TensorList ExpectedProjectorTensors(const LlavaConfig& c) {
  const int64_t V = c.vision.hidden_size, T = c.text.hidden_size;
  const std::string p = kProjectorPrefix;
  TensorList out;
  out.push_back({p + "linear_1.weight", {T, V}});
  if (c.multimodal_projector_bias) out.push_back({p + "linear_1.bias", {T}});
  out.push_back({p + "linear_2.weight", {T, T}});
  if (c.multimodal_projector_bias) out.push_back({p + "linear_2.bias", {T}});
  return out;
}

absl::StatusOr<DecoderCheckpoint> OpenDecoderCheckpoint(const std::string& model_dir) {
  DecoderCheckpoint d;
  if (IsLlavaModelDir(model_dir)) {
    ASSIGN_OR_RETURN(auto llava, LoadLlavaConfig(model_dir));
    ASSIGN_OR_RETURN(d.checkpoint, Checkpoint::Open(model_dir, llava.text));
    d.weight_prefix = kDecoderPrefix;
  } else {
    ASSIGN_OR_RETURN(d.checkpoint, Checkpoint::Open(model_dir));
  }
  return d;
}

}  // namespace muse::models::llava
