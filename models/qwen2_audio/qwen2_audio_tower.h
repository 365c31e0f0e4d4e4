// Qwen2-Audio's audio path in ATen: HF Qwen2AudioEncoder (Whisper-style conv stem, learned
// positions, pre-LN transformer, stride-2 average pool, final LayerNorm) + multi_modal_projector.
// Internal header (includes ATen); the server uses audio_encoder.h.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/qwen2_audio/audio_encoder.h"
#include "models/qwen2_audio/qwen2_audio_config.h"

namespace muse::models::qwen2_audio {

struct AudioLayerWeights {
  at::Tensor ln1_w, ln1_b;  // [D] self_attn_layer_norm
  at::Tensor qkv_w;         // [3D, D]   q, k, v rows fused
  at::Tensor qkv_b;         // [3D]      k's part is zero (k_proj has no bias)
  at::Tensor out_w, out_b;  // [D, D], [D]
  at::Tensor ln2_w, ln2_b;  // [D] final_layer_norm
  at::Tensor fc1_w, fc1_b;  // [F, D], [F]
  at::Tensor fc2_w, fc2_b;  // [D, F], [D]
};

// Returns the named tensor (checked against `shape`) as a tensor of the model's dtype/device.
using TensorGetter = std::function<absl::StatusOr<at::Tensor>(const std::string& name,
                                                              const std::vector<int64_t>& shape)>;

class Qwen2AudioTower {
 public:
  static absl::StatusOr<std::unique_ptr<Qwen2AudioTower>> Load(const Qwen2AudioConfig& config,
                                                               const TensorGetter& get,
                                                               at::ScalarType dtype,
                                                               at::Device device);

  const Qwen2AudioConfig& config() const { return config_; }
  at::ScalarType dtype() const { return dtype_; }

  // features: [num_mel_bins, 2 * max_source_positions] (any float dtype), the first
  // `valid_frames` real (HF's feature attention mask) -> [NumAudioTokens(valid_frames), text
  // hidden] fp32: exactly the rows HF's Qwen2AudioForConditionalGeneration scatters into the
  // prompt. HF masks the keys past EncoderLength(valid_frames) and keeps only those token rows,
  // so no kept row depends on a later encoder row: this computes only the rows that matter.
  // Preconditions (checked by the AudioEncoder face): shapes as above, 1 <= valid_frames <= F.
  at::Tensor Encode(const at::Tensor& features, int64_t valid_frames) const;

 private:
  at::Tensor Layer(const AudioLayerWeights& w, const at::Tensor& h) const;

  Qwen2AudioConfig config_;
  at::ScalarType dtype_ = at::kFloat;
  at::Device device_ = at::kCPU;
  at::Tensor conv1_w_, conv1_b_;  // [D, M, 3], [D]
  at::Tensor conv2_w_, conv2_b_;  // [D, D, 3], [D]
  at::Tensor pos_;                // [max_source_positions, D]
  std::vector<AudioLayerWeights> layers_;
  at::Tensor ln_w_, ln_b_;      // [D] the encoder's final layer_norm
  at::Tensor proj_w_, proj_b_;  // [T, D], [T]
};

// AudioEncoder over Qwen2AudioTower (what CreateAudioEncoder returns).
class AtenAudioEncoder : public AudioEncoder {
 public:
  explicit AtenAudioEncoder(std::unique_ptr<Qwen2AudioTower> tower) : tower_(std::move(tower)) {}
  const Qwen2AudioConfig& config() const override { return tower_->config(); }
  absl::StatusOr<std::vector<float>> Encode(const audio::LogMel& mel) override;
  const Qwen2AudioTower& tower() const { return *tower_; }

 private:
  std::unique_ptr<Qwen2AudioTower> tower_;
};

}  // namespace muse::models::qwen2_audio
