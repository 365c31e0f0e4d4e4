// MuseForConditionalGeneration config.json: the tri-modal composite (text, images, audio) of
// muse-serve's default model. One decoder (text_config, tensors under language_model.), LLaVA's
// vision side (vision_config, image_token_index, the vision_feature_* and projector keys; tensors
// vision_tower.vision_model.* and multi_modal_projector.*) and Qwen2-Audio's audio side
// (audio_config, audio_token_index; tensors audio.audio_tower.* and audio.multi_modal_projector.*).
// Each side parses with its own parser (llava_config.h, qwen2_audio_config.h), so the LLaVA image
// encoder and the Qwen2-Audio audio encoder load from the same directory unchanged; this parser
// adds what only the composite requires. Plain C++, no libtorch.
#pragma once

#include <string>

#include "models/llava/llava_config.h"
#include "models/qwen2_audio/qwen2_audio_config.h"
#include "src/audio/whisper_features.h"
#include "src/common/status.h"

namespace muse::models::muse_composite {

struct MuseConfig {
  llava::LlavaConfig vision;            // vision side + the decoder
  qwen2_audio::Qwen2AudioConfig audio;  // audio side + the same decoder (weight_prefix "audio.")
};

// Parses config.json text. Unlike the single-modality wrappers, vision_config, audio_config,
// text_config, image_token_index and audio_token_index are required (a composite that falls back
// to a 7B tower's defaults is a mistake), and the two placeholder ids must differ. Errors name the
// key ("config.json: key 'audio_token_index' ...").
absl::StatusOr<MuseConfig> ParseMuseConfig(const std::string& json_text);
absl::StatusOr<MuseConfig> LoadMuseConfig(const std::string& model_dir);
// True when <model_dir>/config.json names MuseForConditionalGeneration.
bool IsMuseModelDir(const std::string& model_dir);
// Both sides must share the decoder (vision.text is written; audio.text is ignored).
std::string MuseConfigToJson(const MuseConfig& config);

// The WhisperFeatureExtractor settings of a model directory with an audio tower (Qwen2-Audio or
// Muse), from preprocessor_config.json. In a Muse directory the file is shared with the image
// processor, whose do_normalize (mean/std of pixels) is not the extractor's: it is left out.
absl::StatusOr<audio::WhisperFeatureConfig> LoadAudioFeatureConfig(const std::string& model_dir);

}  // namespace muse::models::muse_composite
