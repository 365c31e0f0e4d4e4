// Writes a Qwen2AudioForConditionalGeneration model directory in HF layout (config.json,
// preprocessor_config.json for the WhisperFeatureExtractor, generation_config.json,
// model.safetensors) with deterministic random weights. Plain C++, no libtorch.
#pragma once

#include <string>
#include <vector>

#include "models/qwen2_audio/qwen2_audio_config.h"
#include "models/testing/random_checkpoint.h"

namespace muse::models::qwen2_audio {

// Decoder tensors (under "language_model.") get exactly the values WriteRandomCheckpoint gives
// the same-named tensor of a plain decoder checkpoint with the same seed. Audio tower and
// projector tensors: RandomAudioTensorValues.
absl::StatusOr<std::vector<WrittenFile>> WriteRandomQwen2AudioCheckpoint(
    const std::string& dir, const Qwen2AudioConfig& config, const RandomCheckpointOptions& options);

// The float32 values written for an audio tower / projector tensor: LayerNorm weights
// 1 + 0.1 * N(0,1) (RandomTensorValues' stream), everything else 0.2 * N(0,1) (ten times the
// decoder's scale) so that a tiny tower's activations and attention scores are O(1) and a test
// sees every op (a near-uniform softmax would hide masking errors).
std::vector<float> RandomAudioTensorValues(const std::string& name, int64_t numel, uint64_t seed);

// Presets used by tests and benchmarks: "qwen2-audio-tiny" (d_model 64, 2 layers, 4 heads, ffn
// 128, 80 mels, 1500 positions; `decoder` supplies the text config, the audio token is its last
// id) and "qwen2-audio-7b-shape" (Qwen/Qwen2-Audio-7B: a whisper-large-v3-sized encoder, d_model
// 1280, 32 layers, 20 heads, ffn 5120, 128 mels, and its Qwen2 7B decoder, hidden 4096).
absl::StatusOr<Qwen2AudioConfig> Qwen2AudioPreset(const std::string& name,
                                                  const ModelConfig& decoder);

// The matching preprocessor_config.json: WhisperFeatureExtractor with feature_size =
// num_mel_bins, 16 kHz, hop 160, n_fft 400, chunk_length = 2 * max_source_positions / 100 s.
std::string WhisperPreprocessorJson(const Qwen2AudioConfig& config);

}  // namespace muse::models::qwen2_audio
