// Decoder shapes muse-make-model writes and the benchmarks measure: "tiny" (Llama 3 tokenizer
// vocab, 2 layers), "small" (~124M parameters, Llama-shaped) and "llama3-8b-shape"
// (Meta-Llama-3-8B dimensions). LlamaForCausalLM, head_dim = hidden / heads; callers change the
// architecture or any size afterwards.
#pragma once

#include <string>

#include "models/model_config.h"
#include "src/common/status.h"

namespace muse::models {

absl::StatusOr<ModelConfig> DecoderPreset(const std::string& name);

}  // namespace muse::models
