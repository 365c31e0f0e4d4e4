// The CPU ModelRunner. fp32 on AVX2 + FMA CPUs runs LlamaCpuModel (muse's own kernels); other
// dtypes, or options.cpu_kernels = false, run LlamaAtenModel's ATen ops (the same code runs on a
// CUDA libtorch device as the reference path of the GPU backend). Internal header: includes ATen.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <vector>

#include "models/llama/llama_aten_model.h"
#include "models/llama/llama_cpu_model.h"
#include "src/runtime/model_runner.h"

namespace muse::runtime {

class CpuModelRunner : public ModelRunner {
 public:
  static absl::StatusOr<std::unique_ptr<CpuModelRunner>> Create(const RunnerOptions& options);

  const models::ModelConfig& config() const override { return config_; }
  int64_t num_kv_blocks() const override { return num_blocks_; }
  int64_t kv_block_bytes() const override { return block_bytes_; }
  absl::Status Forward(const models::Batch& batch, models::Logits* out) override;
  absl::Status ServeTensorParallelWorker() override;
  // Rank 0 of a tensor-parallel group tells the workers to stop (an empty message).
  ~CpuModelRunner() override;

  // Per-layer caches, [num_blocks, kernels::kKvBlockSize, nKV, D] each (tests read them back).
  const std::vector<at::Tensor>& k_caches() const { return k_caches_; }
  const std::vector<at::Tensor>& v_caches() const { return v_caches_; }
  // Which implementation runs the steps: "muse-cpu" (LlamaCpuModel) or "aten".
  const char* backend() const { return cpu_model_ ? "muse-cpu" : "aten"; }

 private:
  models::AttentionMeta BuildMeta(const models::Batch& batch) const;

  models::ModelConfig config_;
  std::unique_ptr<models::LlamaAtenModel> model_;  // ATen path (null when cpu_model_ is set)
  std::unique_ptr<models::LlamaCpuModel> cpu_model_;
  std::vector<float*> k_ptrs_, v_ptrs_;  // cache data, for cpu_model_
  std::vector<at::Tensor> k_caches_, v_caches_;
  collective::Communicator* tp_ = nullptr;  // set when tensor parallel (size > 1)
  int64_t num_blocks_ = 0;
  int64_t block_bytes_ = 0;
};

}  // namespace muse::runtime
