// Writes a MuseForConditionalGeneration model directory (models/muse/muse_config.h): config.json,
// one preprocessor_config.json holding both the image processor's and the WhisperFeatureExtractor's
// keys (as Qwen2.5-Omni's does), generation_config.json and model.safetensors, with deterministic
// random weights. Plain C++, no libtorch.
#pragma once

#include <string>
#include <vector>

#include "models/muse/muse_config.h"
#include "models/testing/random_checkpoint.h"
#include "src/vision/preprocess.h"

namespace muse::models::muse_composite {

// Decoder and vision tensors get exactly the values of a LLaVA checkpoint with the same seed
// (random_llava_checkpoint.h), and audio tensors those of a Qwen2-Audio checkpoint (the "audio."
// prefix is not hashed), so each side can be compared with its single-modality checkpoint.
absl::StatusOr<std::vector<WrittenFile>> WriteRandomMuseCheckpoint(
    const std::string& dir, const MuseConfig& config,
    const vision::PreprocessorConfig& image_preprocessor, const RandomCheckpointOptions& options);

// "muse-tiny": llava-tiny's CLIP tower (image 32, patch 8) and qwen2-audio-tiny's audio tower
// (d_model 64, 2 layers, 80 mels, 30 s chunks) over `decoder`. The caller sets the token ids.
absl::StatusOr<MuseConfig> MusePreset(const std::string& name, const ModelConfig& decoder);

}  // namespace muse::models::muse_composite
