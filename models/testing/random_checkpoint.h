// Writes a HF model directory with deterministic random weights (muse-make-model, tests).
// Plain C++, no libtorch; memory stays bounded by one chunk, whatever the model size.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/model_config.h"
#include "models/safetensors.h"

namespace muse::models {

struct RandomCheckpointOptions {
  uint64_t seed = 0;
  DType dtype = DType::kFloat32;  // kF32, kBF16 or kF16
  int num_shards = 1;             // > 1 writes model-0000i-of-0000N.safetensors + index.json
};

struct WrittenFile {
  std::string path;
  uint64_t bytes = 0;
};

// Writes config.json, generation_config.json and the weights named by ExpectedDecoderTensors
// into `dir` (created if needed; earlier weight files there are replaced). config.torch_dtype
// is set from options.dtype. A tensor's values depend only on the seed and its name, so the
// same seed gives the same weights whatever the dtype rounding or sharding.
absl::StatusOr<std::vector<WrittenFile>> WriteRandomCheckpoint(
    const std::string& dir, const ModelConfig& config, const RandomCheckpointOptions& options);

// The float32 values WriteRandomCheckpoint stores for `name` (before dtype rounding):
// norms 1 + 0.1 * N(0,1), everything else 0.02 * N(0,1).
std::vector<float> RandomTensorValues(const std::string& name, int64_t numel, uint64_t seed);

// float32 values -> the bytes of `dtype` (float32, bfloat16, float16), round to nearest even.
void EncodeTensorValues(const float* in, size_t n, DType dtype, std::vector<uint8_t>* out);
// Writes `text` to path.tmp, then renames it over `path`.
absl::Status WriteTextFileAtomically(const std::string& path, const std::string& text);

// "float32" / "bfloat16" / "float16" <-> DType.
absl::StatusOr<DType> DTypeFromTorchName(const std::string& name);
const char* TorchDTypeName(DType dtype);

}  // namespace muse::models
