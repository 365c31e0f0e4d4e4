// The Llama-family decoder on muse's own fp32 CPU kernels (kernels/cpu): packed AVX2 GEMMs
// with fused bias / residual / SwiGLU epilogues, paged attention, RMSNorm and RoPE on raw
// pointers, all on one thread pool. Same math and batch interface as LlamaAtenModel (the ATen path,
// which stays for bf16/fp16 and CPUs without AVX2). No libtorch at all: weights come straight
// from the checkpoint (F32/F16/BF16 widened to fp32), so this also serves as the fp32 reference
// of the CUDA runner's tests on machines with only CUDA.
//
// Why: ATen on Debian's libtorch runs a decode layer as ~60 small ops whose per-op overhead, plus
// OpenBLAS's per-call packing of the weights, made batch-32 decode ~2x slower than the GEMM FLOPs.
#pragma once

#include <memory>
#include <vector>

#include "kernels/cpu/packed_gemm.h"
#include "kernels/cpu/thread_pool.h"
#include "models/batch.h"
#include "models/checkpoint.h"
#include "models/tensor_parallel.h"
#include "src/collective/communicator.h"
#include "src/common/status.h"

namespace muse::models {

class LlamaCpuModel {
 public:
  // Loads and validates every decoder tensor of `ckpt` (names and shapes as
  // ExpectedDecoderTensors; `weight_prefix` as LlamaAtenModel::Load) and packs it. Requires
  // kernels::cpu::PackedGemmSupported(). `threads` >= 1.
  //
  // Tensor parallel (issue 20): with `comm` (size > 1) this rank loads and packs only its shard
  // (models/tensor_parallel.h) of the unchanged checkpoint, and every Forward takes part in the
  // ranks' collectives (two all-reduces per layer, one all-gather of logits); every rank must call
  // Forward with the same batch. `comm` outlives the model. Shapes that do not split are
  // InvalidArgument naming the key and the rank.
  static absl::StatusOr<std::unique_ptr<LlamaCpuModel>> Load(
      const Checkpoint& ckpt, const std::string& weight_prefix, int threads,
      collective::Communicator* comm = nullptr);

  const ModelConfig& config() const { return config_; }
  int num_threads() const { return pool_.num_threads(); }
  const TensorParallelShard& shard() const { return shard_; }
  // KV heads this rank caches (config().num_key_value_heads without tensor parallelism).
  int64_t num_local_kv_heads() const { return shard_.num_kv_heads; }

  // One step over a validated batch. k_caches / v_caches: per layer, fp32
  // [num_blocks, kernels::kKvBlockSize, num_local_kv_heads(), D]. logits:
  // [batch.logits_indices.size(), vocab] fp32, on every rank. The only errors are a failed
  // collective (Unavailable; the ranks are out of step from then on).
  absl::Status Forward(const models::Batch& batch, const std::vector<float*>& k_caches,
                       const std::vector<float*>& v_caches, float* logits);

 private:
  struct Layer {
    std::vector<float> input_norm, post_norm, qkv_bias, o_bias;  // biases empty when absent
    kernels::cpu::PackedWeight qkv, o_proj, gate_up, down;
  };
  explicit LlamaCpuModel(int threads) : pool_(threads) {}

  ModelConfig config_;
  TensorParallelShard shard_;
  collective::Communicator* comm_ = nullptr;  // null or size 1: no collectives
  kernels::cpu::ThreadPool pool_;
  std::vector<Layer> layers_;
  kernels::cpu::PackedWeight lm_head_;
  std::vector<float> embed_;  // [V, H]; empty when tied (rows come from lm_head_)
  std::vector<float> final_norm_, inv_freq_;
  // Step buffers, grown on demand.
  std::vector<float> h_, xn_, qkv_, attn_, act_, cos_, sin_, rows_;
  std::vector<float> local_logits_, gathered_logits_;  // tensor parallel
};

}  // namespace muse::models
