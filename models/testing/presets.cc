#include "models/testing/presets.h"

#include "absl/strings/str_cat.h"

namespace muse::models {

absl::StatusOr<ModelConfig> DecoderPreset(const std::string& name) {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.arch = Arch::kLlama;
  c.rms_norm_eps = 1e-5;
  if (name == "tiny") {
    c.vocab_size = 128256;  // Llama 3 tokenizer
    c.hidden_size = 64;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.intermediate_size = 172;
    c.max_position_embeddings = 8192;
    c.rope_theta = 500000.0;
    c.rope_scaling = {"llama3", 8.0, 1.0, 4.0, 8192};
    c.bos_token_id = 128000;
    c.eos_token_ids = {128001, 128009};
  } else if (name == "small") {  // ~124M parameters
    c.vocab_size = 32000;
    c.hidden_size = 768;
    c.num_hidden_layers = 12;
    c.num_attention_heads = 12;
    c.num_key_value_heads = 4;
    c.intermediate_size = 2048;
    c.max_position_embeddings = 4096;
    c.rope_theta = 10000.0;
    c.bos_token_id = 1;
    c.eos_token_ids = {2};
  } else if (name == "llama3-8b-shape") {  // Meta-Llama-3-8B dimensions
    c.vocab_size = 128256;
    c.hidden_size = 4096;
    c.num_hidden_layers = 32;
    c.num_attention_heads = 32;
    c.num_key_value_heads = 8;
    c.intermediate_size = 14336;
    c.max_position_embeddings = 8192;
    c.rope_theta = 500000.0;
    c.bos_token_id = 128000;
    c.eos_token_ids = {128001, 128009};
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown preset '", name, "' (tiny, small, llama3-8b-shape)"));
  }
  c.head_dim = c.hidden_size / c.num_attention_heads;
  return c;
}

}  // namespace muse::models
