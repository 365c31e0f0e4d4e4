// LlavaForConditionalGeneration config.json (HF layout): vision_config (CLIP or SigLIP vision
// transformer), text_config (Llama-family decoder), projector and feature-selection keys.
// Plain C++, no libtorch.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/checkpoint.h"
#include "models/model_config.h"
#include "src/common/status.h"

namespace muse::models::llava {

enum class VisionArch { kClip, kSiglip };

struct VisionConfig {
  VisionArch arch = VisionArch::kClip;
  int64_t hidden_size = 1024;
  int64_t intermediate_size = 4096;
  int64_t num_hidden_layers = 24;
  int64_t num_attention_heads = 16;
  int64_t num_channels = 3;
  int64_t image_size = 336;
  int64_t patch_size = 14;
  double layer_norm_eps = 1e-5;
  std::string hidden_act = "quick_gelu";  // quick_gelu | gelu_pytorch_tanh | gelu

  int64_t grid() const {
    return image_size / patch_size;
  }  // patches per side (conv drops the rest)
  int64_t num_patches() const { return grid() * grid(); }
  bool has_class_token() const { return arch == VisionArch::kClip; }
  int64_t num_positions() const { return num_patches() + (has_class_token() ? 1 : 0); }
  int64_t head_dim() const { return hidden_size / num_attention_heads; }
};

struct LlavaConfig {
  VisionConfig vision;
  ModelConfig text;
  int64_t image_token_index = 32000;
  int64_t vision_feature_layer = -2;  // index into hidden_states (0 = embeddings output)
  std::string vision_feature_select_strategy = "default";  // "default" drops token 0, "full" keeps
  std::string projector_hidden_act = "gelu";
  bool multimodal_projector_bias = true;

  // hidden_states index in [0, num_hidden_layers] the features come from.
  int64_t feature_layer_index() const;
  // Rows one image contributes to the prompt.
  int64_t num_image_tokens() const;
};

// Parses config.json text (LlavaForConditionalGeneration, or the LLaVA side of a
// MuseForConditionalGeneration composite, models/muse/muse_config.h). Missing keys take
// transformers' defaults (LlavaConfig, CLIPVisionConfig / SiglipVisionConfig, LlamaConfig /
// MistralConfig / Qwen2Config), so the terse configs of published checkpoints
// (llava-hf/llava-1.5-7b-hf) load. Errors name the key.
absl::StatusOr<LlavaConfig> ParseLlavaConfig(const std::string& json_text);
absl::StatusOr<LlavaConfig> LoadLlavaConfig(const std::string& model_dir);
// True when <model_dir>/config.json names LlavaForConditionalGeneration or the tri-modal
// MuseForConditionalGeneration (whose vision side, decoder and image token parse as LLaVA's).
bool IsLlavaModelDir(const std::string& model_dir);
std::string LlavaConfigToJson(const LlavaConfig& config);

// Where the decoder's tensors live in a LLaVA checkpoint.
inline constexpr const char* kDecoderPrefix = "language_model.";

// The decoder checkpoint of a model directory, for the runners: a LLaVA directory's decoder
// (config from text_config, tensors under kDecoderPrefix), or a plain decoder directory.
struct DecoderCheckpoint {
  std::unique_ptr<Checkpoint> checkpoint;
  std::string weight_prefix;  // "" or kDecoderPrefix
};
absl::StatusOr<DecoderCheckpoint> OpenDecoderCheckpoint(const std::string& model_dir);
inline constexpr const char* kVisionPrefix = "vision_tower.vision_model.";
inline constexpr const char* kProjectorPrefix = "multi_modal_projector.";

using TensorList = std::vector<std::pair<std::string, std::vector<int64_t>>>;
// Vision tower tensors the features need (layers past the feature layer and unused norms are
// left out unless `all` is set, which lists what a full HF checkpoint holds).
TensorList ExpectedVisionTensors(const LlavaConfig& config, bool all = false);
TensorList ExpectedProjectorTensors(const LlavaConfig& config);

}  // namespace muse::models::llava
