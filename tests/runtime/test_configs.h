// Small decoder configs of each architecture for runtime tests, and temporary directories.
// Plain C++ (no libtorch), so test binaries that must run on CUDA-only machines can use them.
#pragma once

#include <string>

#include "models/model_config.h"

namespace muse::testing {

// Small configs of each architecture with odd sizes; `variant` selects the arch:
// "llama" (GQA, llama3 rope scaling, tied embeddings), "mistral" (sliding window 24),
// "qwen2" (qkv bias, untied), "mha" (no GQA), "llama_bias" (attention_bias: q/k/v/o biases).
models::ModelConfig SmallConfig(const std::string& variant);

// A fresh temporary directory (removed by the OS's tmp cleaning; tests use unique names).
std::string MakeTempDir(const std::string& prefix);

}  // namespace muse::testing
