#include "tests/runtime/test_configs.h"

#include <cstdlib>
#include <stdexcept>
#include <vector>

namespace muse::testing {

models::ModelConfig SmallConfig(const std::string& variant) {
  models::ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.arch = models::Arch::kLlama;
  c.vocab_size = 397;
  c.hidden_size = 96;
  c.intermediate_size = 200;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 6;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.max_position_embeddings = 4096;
  c.rope_theta = 10000.0;
  c.rms_norm_eps = 1e-5;
  c.torch_dtype = "float32";
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  if (variant == "llama") {
    c.tie_word_embeddings = true;
    c.rope_theta = 500000.0;
    c.rope_scaling.type = "llama3";
    c.rope_scaling.factor = 8.0;
    c.rope_scaling.low_freq_factor = 1.0;
    c.rope_scaling.high_freq_factor = 4.0;
    c.rope_scaling.original_max_position_embeddings = 64;  // small, so every band is exercised
  } else if (variant == "mistral") {
    c.architecture = "MistralForCausalLM";
    c.arch = models::Arch::kMistral;
    c.sliding_window = 24;
  } else if (variant == "qwen2") {
    c.architecture = "Qwen2ForCausalLM";
    c.arch = models::Arch::kQwen2;
    c.attention_bias = true;
    c.rms_norm_eps = 1e-6;
  } else if (variant == "mha") {
    c.num_key_value_heads = 6;
  } else if (variant == "llama_bias") {  // attention_bias on Llama: q/k/v and o_proj biases
    c.attention_bias = true;
  } else {
    throw std::invalid_argument("unknown variant " + variant);
  }
  return c;
}

std::string MakeTempDir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return std::string(buf.data());
}

}  // namespace muse::testing
