// ModelRunner over ATen ops (the CPU backend; the same code runs on a CUDA libtorch device as the
// reference path of the GPU backend). Internal header: includes ATen.
#pragma once

#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>

#include "models/llama/llama_model.h"
#include "src/runtime/model_runner.h"

namespace muse::runtime {

class AtenModelRunner : public ModelRunner {
 public:
  static absl::StatusOr<std::unique_ptr<AtenModelRunner>> Create(const RunnerOptions& options);

  const models::ModelConfig& config() const override { return model_->config(); }
  int64_t num_kv_blocks() const override { return num_blocks_; }
  int64_t kv_block_bytes() const override { return block_bytes_; }
  absl::Status Forward(const Batch& batch, Logits* out) override;

  // Per-layer caches, [num_blocks, kBlockSize, nKV, D] each (tests read them back).
  const std::vector<at::Tensor>& k_caches() const { return k_caches_; }
  const std::vector<at::Tensor>& v_caches() const { return v_caches_; }

 private:
  models::AttentionMeta BuildMeta(const Batch& batch) const;

  std::unique_ptr<models::LlamaModel> model_;
  std::vector<at::Tensor> k_caches_, v_caches_;
  int64_t num_blocks_ = 0;
  int64_t block_bytes_ = 0;
};

}  // namespace muse::runtime
