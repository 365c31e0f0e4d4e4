// The immutable per-model state the API layer needs besides the engine: tokenizer, chat template,
// limits. Built once at startup (server.cc), then shared read-only by every gRPC thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "models/model_config.h"
#include "models/qwen2_audio/qwen2_audio_config.h"
#include "src/audio/audio_decode.h"
#include "src/audio/whisper_features.h"
#include "src/server/chat_formats.h"
#include "src/server/structured_output.h"
#include "src/tokenizer/jinja/chat_template.h"
#include "src/tokenizer/tokenizer.h"
#include "src/vision/image.h"
#include "src/vision/preprocess.h"

namespace muse::server {

// What the API layer needs of a LLaVA model's vision side (the encoder itself lives in
// ImageEncoderWorker).
struct VisionInfo {
  vision::PreprocessorConfig preprocessor;  // preprocessor_config.json
  vision::DecodeLimits limits;              // --max-image-bytes / --max-image-pixels
  int32_t image_token_id = 0;               // the placeholder (<image>) token
  std::string image_token;                  // its text, e.g. "<image>"
  int32_t num_image_tokens = 0;             // prompt rows one image expands to
  int32_t hidden_size = 0;                  // of the decoder (= embedding row width)
};

// What the API layer needs of a model's audio side (Qwen2-Audio tower; the encoder itself lives in
// the encoder worker).
struct AudioInfo {
  audio::WhisperFeatureConfig features;  // preprocessor_config.json
  audio::AudioLimits limits;             // --max-audio-bytes / --max-audio-seconds
  int32_t audio_token_id = 0;            // the placeholder (<|AUDIO|>) token
  std::string audio_token;               // its text
  int32_t hidden_size = 0;               // of the decoder (= embedding row width)
  // Prompt rows one clip expands to: Qwen2-Audio's conv + pool lengths of its valid mel frames.
  static int32_t NumTokens(int valid_frames) {
    return static_cast<int32_t>(
        models::qwen2_audio::Qwen2AudioConfig::NumAudioTokens(valid_frames));
  }
};

struct ServedModel {
  std::string id;  // served model name (directory basename unless --served-model-name)
  models::ModelConfig config;
  int64_t max_model_len = 0;  // prompt + completion tokens
  int64_t kv_blocks_total = 0;
  int max_num_seqs = 0;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  std::optional<jinja::ChatTemplate> chat_template;
  std::string bos_token;  // for the chat template context
  std::string eos_token;
  bool supports_images = false;  // == vision.has_value()
  std::optional<VisionInfo> vision;
  std::optional<AudioInfo> audio;  // set for models with an audio tower (Muse, Qwen2-Audio)
  StructuredOutput structured;     // response_format's vocabulary + compiled-grammar cache
  ChatFormats chat_formats;        // tool-call parser and reasoning channel (chat_formats.h)
};

}  // namespace muse::server
