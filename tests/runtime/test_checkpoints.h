// Random HF-layout checkpoints for runtime tests, written with the models library (independent of
// muse-make-model) from ATen random weights.
#pragma once

#include <string>

#include "models/model_config.h"
#include "tests/runtime/test_configs.h"

namespace muse::testing {

// Writes config.json + model.safetensors (fp32, seed-deterministic) into `dir`.
void WriteRandomCheckpoint(const std::string& dir, const models::ModelConfig& config, int seed);

}  // namespace muse::testing
