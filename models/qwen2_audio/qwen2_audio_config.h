// Qwen2AudioForConditionalGeneration config.json (HF layout): audio_config (the Whisper-style
// encoder, Qwen2AudioEncoderConfig), text_config (Qwen2 or Llama decoder) and audio_token_index.
// Plain C++, no libtorch.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "models/model_config.h"
#include "src/common/status.h"

namespace muse::models::qwen2_audio {

struct AudioEncoderConfig {
  int64_t d_model = 1280;
  int64_t encoder_layers = 32;
  int64_t encoder_attention_heads = 20;
  int64_t encoder_ffn_dim = 5120;
  int64_t num_mel_bins = 128;
  int64_t max_source_positions = 1500;
  std::string activation_function = "gelu";  // only gelu (exact erf), as every Qwen2-Audio
  double layer_norm_eps = 1e-5;              // nn.LayerNorm's default; HF has no key for it

  int64_t head_dim() const { return d_model / encoder_attention_heads; }
  // Mel frames the tower takes: conv2 has stride 2, so 2 * max_source_positions (3000 = 30 s).
  int64_t input_frames() const { return 2 * max_source_positions; }
};

struct Qwen2AudioConfig {
  AudioEncoderConfig audio;
  ModelConfig text;
  int64_t audio_token_index = 151646;
  // Prepended to kAudioPrefix / kProjectorPrefix: "" in a Qwen2-Audio checkpoint, kMuseAudioPrefix
  // in a MuseForConditionalGeneration one (where multi_modal_projector.* is the image side's).
  std::string weight_prefix;

  // HF Qwen2AudioEncoder._get_feat_extract_output_lengths, for valid_frames >= 1 mel frames
  // (the feature extractor's attention mask sum): encoder rows after conv2, and the audio tokens
  // after the stride-2 average pool, i.e. the rows one clip contributes to the prompt.
  static int64_t EncoderLength(int64_t valid_frames) { return (valid_frames - 1) / 2 + 1; }
  static int64_t NumAudioTokens(int64_t valid_frames) {
    const int64_t n = EncoderLength(valid_frames) - 2;
    // Python's floor division: one encoder row (1 or 2 frames) gives no token.
    return (n >= 0 ? n / 2 : -((-n + 1) / 2)) + 1;
  }
  // Tokens of a full chunk (750 for 3000 frames).
  int64_t max_audio_tokens() const { return NumAudioTokens(audio.input_frames()); }
};

// Parses config.json text (Qwen2AudioForConditionalGeneration, or the audio side of a
// MuseForConditionalGeneration composite, models/muse/muse_config.h, which sets weight_prefix and
// parses text_config with LLaVA's default model_type llama). Missing keys take transformers'
// defaults (Qwen2AudioConfig, Qwen2AudioEncoderConfig, Qwen2Config), as Qwen/Qwen2-Audio-7B's terse
// config relies on. Errors name the key (e.g. "config.json: key 'audio_config.d_model' must be
// positive").
absl::StatusOr<Qwen2AudioConfig> ParseQwen2AudioConfig(const std::string& json_text);
absl::StatusOr<Qwen2AudioConfig> LoadQwen2AudioConfig(const std::string& model_dir);
// True when <model_dir>/config.json names Qwen2AudioForConditionalGeneration or the tri-modal
// MuseForConditionalGeneration (both have a Qwen2-Audio audio tower).
bool IsQwen2AudioModelDir(const std::string& model_dir);
std::string Qwen2AudioConfigToJson(const Qwen2AudioConfig& config);

// Where the tensors live in a Qwen2-Audio checkpoint.
inline constexpr const char* kDecoderPrefix = "language_model.";
inline constexpr const char* kAudioPrefix = "audio_tower.";
inline constexpr const char* kProjectorPrefix = "multi_modal_projector.";
// The audio side of a MuseForConditionalGeneration checkpoint: audio.audio_tower.*,
// audio.multi_modal_projector.*.
inline constexpr const char* kMuseAudioPrefix = "audio.";

using TensorList = std::vector<std::pair<std::string, std::vector<int64_t>>>;
// The weight spec, written once (names under config.weight_prefix): every audio tower tensor of an
// HF checkpoint with its shape (k_proj has no bias), and the projector (Linear d_model -> text
// hidden_size).
TensorList ExpectedAudioTensors(const Qwen2AudioConfig& config);
TensorList ExpectedAudioProjectorTensors(const Qwen2AudioConfig& config);

}  // namespace muse::models::qwen2_audio
