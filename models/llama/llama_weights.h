// The Llama family's weights (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM), written
// once: HF tensor names and shapes, how q/k/v and gate/up fuse, and which biases exist. Every
// backend's forward (llama_cpu_model, llama_aten_model, llama_cuda_model) loads through this spec,
// and muse-make-model, checkpoint validation and the fixtures list tensors through it. Plain C++.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "models/checkpoint.h"
#include "models/model_config.h"
#include "src/common/status.h"

namespace muse::models {

// One checkpoint tensor.
struct CheckpointTensor {
  std::string name;
  std::vector<int64_t> shape;
};

// A weight as a forward uses it: one checkpoint tensor, or several concatenated along their first
// dimension (fused). Absent (no parts) for an optional bias the config does not have.
struct FusedWeight {
  std::vector<CheckpointTensor> parts;

  bool present() const { return !parts.empty(); }
  int64_t rows() const;   // sum of the parts' first dimensions
  int64_t numel() const;  // elements of the fused weight
};

struct LlamaLayerSpec {
  FusedWeight input_norm;  // [H]
  FusedWeight qkv;         // [(nH + 2 nKV) D, H]: q rows, then k, then v
  FusedWeight qkv_bias;    // [(nH + 2 nKV) D]; present when config.attention_bias
  FusedWeight o_proj;      // [H, nH D]
  FusedWeight o_bias;      // [H]; present for Llama with attention_bias (HF LlamaAttention),
                           // never for Qwen2
  FusedWeight post_norm;   // [H]
  FusedWeight gate_up;     // [2 I, H]: gate rows, then up rows
  FusedWeight down;        // [H, I]
};

struct LlamaWeightSpec {
  FusedWeight embed;  // [V, H]
  std::vector<LlamaLayerSpec> layers;
  FusedWeight final_norm;  // [H]
  FusedWeight lm_head;     // [V, H]; absent when tie_word_embeddings (the embedding is the head)
};

// `prefix` is prepended to every name (LLaVA keeps its decoder under "language_model.").
LlamaWeightSpec MakeLlamaWeightSpec(const ModelConfig& config, const std::string& prefix = "");

// Every checkpoint tensor of the spec, in HF order (embed, layers, norm, lm_head).
std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedDecoderTensors(
    const ModelConfig& config, const std::string& prefix = "");

// The fused weight read from `ckpt` as fp32 (F32/F16/BF16 widened), row-major [rows, cols]. Each
// part is looked up and shape-checked (errors name the tensor); an integer dtype is
// InvalidArgument naming the tensor.
absl::StatusOr<std::vector<float>> ReadFloat32(const Checkpoint& ckpt, const FusedWeight& weight);

}  // namespace muse::models
