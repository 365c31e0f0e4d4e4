// The CUDA ModelRunner: Llama-family decoders in bf16/fp16 on one GPU over muse's kernels
// (kernels/: paged attention, KV write, RMSNorm, RoPE, SiLU-and-mul, row gather) with cuBLAS
// GEMMs, and CUDA graphs replayed for decode steps. No libtorch: weights go from the mmapped
// checkpoint to the device through host-side dtype conversion.
//
// This header has no CUDA includes (pimpl), so the runtime factory can include it.
#pragma once

#include <memory>

#include "src/runtime/model_runner.h"

namespace muse::runtime {

class CudaModelRunner : public ModelRunner {
 public:
  // options.device: "cuda" or "cuda:N"; options.dtype: bfloat16 (default for "float32" is an
  // error: the GPU path is 16-bit) or float16.
  static absl::StatusOr<std::unique_ptr<CudaModelRunner>> Create(const RunnerOptions& options);
  ~CudaModelRunner() override;

  const models::ModelConfig& config() const override;
  int64_t num_kv_blocks() const override;
  int64_t kv_block_bytes() const override;
  absl::Status Forward(const models::Batch& batch, models::Logits* out) override;
  // Device sampling (kernels/cuda/sampling.h) on the step's fp32 logits, outside any CUDA graph;
  // on unless RunnerOptions::device_sampling was false.
  bool SamplesOnDevice() const override;
  absl::Status ForwardAndSample(const models::Batch& batch, const models::SamplingInputs& sampling,
                                models::SampledTokens* out) override;

  // Decode steps (every sequence one new token, logits for each, no embedding overrides,
  // <= 256 sequences) replay a CUDA graph captured per (padded batch size, context bucket).
  // Off: every step launches eagerly (tests compare the two).
  void set_use_cuda_graphs(bool on);
  int num_cuda_graphs() const;  // graphs captured so far

 private:
  struct Impl;
  explicit CudaModelRunner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// True when the CUDA runtime sees at least one device.
bool CudaDeviceAvailable();

}  // namespace muse::runtime
