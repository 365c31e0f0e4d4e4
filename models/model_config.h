// Model hyper-parameters parsed from a HF config.json. Plain C++, no libtorch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/common/status.h"

namespace muse::models {

enum class Arch { kLlama, kMistral, kQwen2 };

struct RopeScaling {
  std::string type;  // "" (none), "llama3", "linear"
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string architecture;  // e.g. "LlamaForCausalLM"
  Arch arch = Arch::kLlama;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // config "head_dim" or hidden_size / num_attention_heads
  int64_t max_position_embeddings = 0;
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v projections have bias (Qwen2: always); on Llama also
                                // o_proj (HF LlamaAttention), see models/llama/llama_weights.h
  int64_t sliding_window = 0;   // 0 = full attention (Mistral may set it)
  RopeScaling rope_scaling;
  std::string torch_dtype;  // as stored in config.json ("float32", "bfloat16", ...)
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;
};

// Parses the text of a config.json. Errors name the offending key.
absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text);
// Reads <dir>/config.json.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir);
// Serialises to HF config.json text (used by muse-make-model); ParseModelConfig round-trips it.
std::string ModelConfigToJson(const ModelConfig& config);

}  // namespace muse::models
