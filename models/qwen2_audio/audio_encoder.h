// The audio encoder interface the server/engine will use: Whisper log-mel features in, projected
// audio embeddings (rows for the decoder's input) out. Plain C++: no libtorch in this header.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "models/qwen2_audio/qwen2_audio_config.h"
#include "src/audio/log_mel.h"
#include "src/common/status.h"

namespace muse::models::qwen2_audio {

class AudioEncoder {
 public:
  virtual ~AudioEncoder() = default;
  virtual const Qwen2AudioConfig& config() const = 0;
  int64_t hidden_size() const { return config().text.hidden_size; }
  // Encodes one clip: mel must be [num_mel_bins, 2 * max_source_positions] with
  // 1 <= valid_frames <= n_frames (a mismatch is InvalidArgument naming the field). Returns
  // [NumAudioTokens(valid_frames), hidden_size] fp32, row-major (empty for 1 or 2 frames, as HF).
  // Not thread-safe: one caller at a time (ATen's intra-op pool parallelises inside).
  virtual absl::StatusOr<std::vector<float>> Encode(const audio::LogMel& mel) = 0;
};

struct AudioEncoderOptions {
  std::string dtype = "float32";  // float32, bfloat16, float16
  int num_threads = 0;            // 0 = keep libtorch's default
};

// Loads the audio tower and projector of the Qwen2-Audio checkpoint in `model_dir`. A missing
// tensor or a shape that disagrees with config.json is InvalidArgument naming the tensor.
absl::StatusOr<std::unique_ptr<AudioEncoder>> CreateAudioEncoder(
    const std::string& model_dir, const AudioEncoderOptions& options);

}  // namespace muse::models::qwen2_audio
