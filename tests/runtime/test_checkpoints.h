// Random HF-layout checkpoints for runtime tests, written with the models library (independent of
// muse-make-model) from ATen random weights.
#pragma once

#include <string>

#include "models/model_config.h"

namespace muse::testing {

// Small configs of each architecture with odd sizes; `variant` selects the arch:
// "llama" (GQA, llama3 rope scaling, tied embeddings), "mistral" (sliding window 24),
// "qwen2" (qkv bias, untied), "mha" (no GQA), "llama_bias" (attention_bias: q/k/v/o biases).
models::ModelConfig SmallConfig(const std::string& variant);

// Writes config.json + model.safetensors (fp32, seed-deterministic) into `dir`.
void WriteRandomCheckpoint(const std::string& dir, const models::ModelConfig& config, int seed);

// A fresh temporary directory (removed by the OS's tmp cleaning; tests use unique names).
std::string MakeTempDir(const std::string& prefix);

}  // namespace muse::testing
