// Writes a LlavaForConditionalGeneration model directory in HF layout (config.json,
// preprocessor_config.json, generation_config.json, model.safetensors) with deterministic random
// weights, streaming (memory bounded by one chunk). Plain C++, no libtorch.
#pragma once

#include <string>
#include <vector>

#include "models/llava/llava_config.h"
#include "models/testing/random_checkpoint.h"
#include "src/vision/preprocess.h"

namespace muse::models::llava {

// Decoder tensors get exactly the values WriteRandomCheckpoint gives the same-named tensor of a
// plain decoder checkpoint with the same seed (the "language_model." prefix is not hashed), so a
// LLaVA directory and a text-only directory can be compared weight for weight.
// Vision/projector tensors: 0.02 * N(0,1); LayerNorm weights 1 + 0.1 * N(0,1).
absl::StatusOr<std::vector<WrittenFile>> WriteRandomLlavaCheckpoint(
    const std::string& dir, const LlavaConfig& config,
    const vision::PreprocessorConfig& preprocessor, const RandomCheckpointOptions& options);

// The float32 values written for a vision/projector tensor.
std::vector<float> RandomVisionTensorValues(const std::string& name, int64_t numel, uint64_t seed);

// Presets used by muse-make-model and tests: "llava-tiny" (CLIP tower image 32, patch 8,
// hidden 32, 2 layers), "llava-tiny-siglip" (SigLIP tower image 30, patch 6), "llava-1.5-7b-shape"
// (CLIP ViT-L/14-336 + Llama-2-7B dimensions). `decoder` supplies the text config for the tiny
// presets; the 7b shape sets its own.
absl::StatusOr<LlavaConfig> LlavaPreset(const std::string& name, const ModelConfig& decoder);
// The matching preprocessor_config.json (CLIPImageProcessor with shortest_edge/crop = image size,
// or SiglipImageProcessor resizing to image size).
vision::PreprocessorConfig PreprocessorFor(const LlavaConfig& config);

}  // namespace muse::models::llava
