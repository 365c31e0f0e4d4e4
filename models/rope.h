// RoPE inverse frequencies as HF transformers computes them (float32), with "llama3" and
// "linear" rope_scaling (kernels/rope_freqs.h, from a ModelConfig). The ATen model, the fp32 CPU
// model and the CUDA model all take their angles from here.
#pragma once

#include <vector>

#include "models/model_config.h"

namespace muse::models {

// [head_dim / 2]: inv_freq[i] = 1 / theta^(2i / head_dim), then scaled.
std::vector<float> RopeInvFreq(const ModelConfig& config);

}  // namespace muse::models
