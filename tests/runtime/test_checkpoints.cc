#include "tests/runtime/test_checkpoints.h"

#include <ATen/ATen.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "models/checkpoint.h"
#include "models/llama/llama_weights.h"
#include "models/safetensors.h"

namespace muse::testing {

void WriteRandomCheckpoint(const std::string& dir, const models::ModelConfig& c, int seed) {
  at::manual_seed(seed);
  std::vector<models::TensorToWrite> tensors;
  for (const auto& [name, shape] : models::ExpectedDecoderTensors(c)) {
    at::Tensor t;
    if (name.find("norm") != std::string::npos) {
      t = 1.0 + 0.2 * at::randn(shape);  // norms near one, never trivial
    } else if (name.find("bias") != std::string::npos) {
      t = 0.1 * at::randn(shape);
    } else {
      t = at::randn(shape) / std::sqrt(static_cast<double>(shape.back()));
    }
    t = t.contiguous();
    models::TensorToWrite w;
    w.name = name;
    w.dtype = models::DType::kFloat32;
    w.shape = shape;
    w.bytes.resize(t.numel() * sizeof(float));
    std::memcpy(w.bytes.data(), t.data_ptr<float>(), w.bytes.size());
    tensors.push_back(std::move(w));
  }
  std::ofstream(dir + "/config.json") << models::ModelConfigToJson(c);
  auto st = models::WriteSafetensors(dir + "/model.safetensors", tensors);
  if (!st.ok()) throw std::runtime_error(st.ToString());
}

}  // namespace muse::testing
