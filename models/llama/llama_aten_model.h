// Llama-family decoder (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM) in ATen over the
// paged KV cache of models/batch.h. Device-agnostic ATen ops; used by the CPU runner.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <vector>

#include "models/checkpoint.h"
#include "src/common/status.h"

namespace muse::models {

struct LlamaLayerWeights {
  at::Tensor input_norm;  // [H]
  at::Tensor qkv;         // [(nH + 2 nKV) * D, H]   q, k, v projections fused along rows
  at::Tensor qkv_bias;    // [(nH + 2 nKV) * D] or undefined
  at::Tensor o_proj;      // [H, nH * D]
  at::Tensor o_bias;      // [H] or undefined (LlamaLayerSpec::o_bias)
  at::Tensor post_norm;   // [H]
  at::Tensor gate_up;     // [2 I, H]   gate rows first, then up
  at::Tensor down;        // [H, I]
};

// Per-step metadata derived once from a Batch and shared by every layer (index tensors on device).
struct AttentionMeta {
  at::Tensor write_token_idx;  // [W] int64 tokens whose K/V are written
  at::Tensor write_slots;      // [W] int64 their slots
  // Decode group: sequences with exactly one new token, attended to in one padded batch.
  at::Tensor dec_token_idx;  // [Bd] int64
  at::Tensor dec_blocks;     // [Bd, nb_max] int64, padding -> 0 (masked)
  at::Tensor dec_mask;       // [Bd, 1, 1, nb_max * 16] additive mask (0 / -inf), compute dtype
  // Other sequences (prefill chunks), one at a time.
  struct Chunk {
    int64_t token_begin = 0, q_len = 0, seq_len = 0;
    at::Tensor blocks;  // [nb] int64
    at::Tensor mask;    // [q_len, seq_len] additive
  };
  std::vector<Chunk> chunks;
};

class LlamaAtenModel {
 public:
  // Loads and validates every tensor (names and shapes from MakeLlamaWeightSpec), casting to
  // `dtype` on `device`. `weight_prefix` is prepended to every tensor name (LLaVA checkpoints
  // keep the decoder under "language_model.").
  static absl::StatusOr<std::unique_ptr<LlamaAtenModel>> Load(
      const Checkpoint& ckpt, at::ScalarType dtype, at::Device device,
      const std::string& weight_prefix = "");

  const ModelConfig& config() const { return config_; }
  at::ScalarType dtype() const { return dtype_; }
  at::Device device() const { return device_; }

  // hidden: [T, H] input embeddings; positions: [T] int64. Returns final hidden states [T, H]
  // (before the final norm). Writes K/V of the new tokens into caches via meta.
  at::Tensor Forward(at::Tensor hidden, const at::Tensor& positions, const AttentionMeta& meta,
                     std::vector<at::Tensor>& k_caches, std::vector<at::Tensor>& v_caches) const;
  at::Tensor Embed(const at::Tensor& ids) const;  // ids [T] int64 -> [T, H]
  // Final norm + lm_head on the selected rows; returns fp32 [R, V].
  at::Tensor Logits(const at::Tensor& hidden_rows) const;

 private:
  at::Tensor Attention(const LlamaLayerWeights& w, const at::Tensor& x, const at::Tensor& cos,
                       const at::Tensor& sin, const AttentionMeta& meta, at::Tensor& k_cache,
                       at::Tensor& v_cache) const;
  at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight) const;

  ModelConfig config_;
  at::ScalarType dtype_;
  at::Device device_ = at::kCPU;
  at::Tensor embed_;    // [V, H]
  at::Tensor lm_head_;  // [V, H] (aliases embed_ when tied)
  at::Tensor final_norm_;
  at::Tensor inv_freq_;  // [D/2] fp32, llama3 scaling applied
  std::vector<LlamaLayerWeights> layers_;
};

}  // namespace muse::models
