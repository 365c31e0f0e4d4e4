#include "models/llama/llama_weights.h"

#include "absl/strings/str_cat.h"
#include "models/half.h"

namespace muse::models {

int64_t FusedWeight::rows() const {
  int64_t r = 0;
  for (const auto& p : parts) r += p.shape.empty() ? 0 : p.shape[0];
  return r;
}

int64_t FusedWeight::numel() const {
  int64_t n = 0;
  for (const auto& p : parts) {
    int64_t e = 1;
    for (int64_t d : p.shape) e *= d;
    n += e;
  }
  return n;
}

LlamaWeightSpec MakeLlamaWeightSpec(const ModelConfig& c, const std::string& prefix) {
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int64_t q = c.num_attention_heads * c.head_dim;
  const int64_t kv = c.num_key_value_heads * c.head_dim;
  // HF's LlamaAttention gives o_proj a bias when attention_bias is set; Qwen2's o_proj never has
  // one.
  const bool o_bias = c.arch == Arch::kLlama && c.attention_bias;
  auto one = [](std::string name, std::vector<int64_t> shape) {
    return FusedWeight{{CheckpointTensor{std::move(name), std::move(shape)}}};
  };
  LlamaWeightSpec s;
  s.embed = one(prefix + "model.embed_tokens.weight", {V, H});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = absl::StrCat(prefix, "model.layers.", i, ".");
    LlamaLayerSpec l;
    l.input_norm = one(p + "input_layernorm.weight", {H});
    l.qkv = FusedWeight{{{p + "self_attn.q_proj.weight", {q, H}},
                         {p + "self_attn.k_proj.weight", {kv, H}},
                         {p + "self_attn.v_proj.weight", {kv, H}}}};
    if (c.attention_bias) {
      l.qkv_bias = FusedWeight{{{p + "self_attn.q_proj.bias", {q}},
                                {p + "self_attn.k_proj.bias", {kv}},
                                {p + "self_attn.v_proj.bias", {kv}}}};
    }
    l.o_proj = one(p + "self_attn.o_proj.weight", {H, q});
    if (o_bias) l.o_bias = one(p + "self_attn.o_proj.bias", {H});
    l.post_norm = one(p + "post_attention_layernorm.weight", {H});
    l.gate_up =
        FusedWeight{{{p + "mlp.gate_proj.weight", {I, H}}, {p + "mlp.up_proj.weight", {I, H}}}};
    l.down = one(p + "mlp.down_proj.weight", {H, I});
    s.layers.push_back(std::move(l));
  }
  s.final_norm = one(prefix + "model.norm.weight", {H});
  if (!c.tie_word_embeddings) s.lm_head = one(prefix + "lm_head.weight", {V, H});
  return s;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedDecoderTensors(
    const ModelConfig& config, const std::string& prefix) {
  const LlamaWeightSpec s = MakeLlamaWeightSpec(config, prefix);
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  auto add = [&](const FusedWeight& w) {
    for (const auto& p : w.parts) out.emplace_back(p.name, p.shape);
  };
  add(s.embed);
  for (const auto& l : s.layers) {
    for (const FusedWeight* w : {&l.input_norm, &l.qkv, &l.qkv_bias, &l.o_proj, &l.o_bias,
                                 &l.post_norm, &l.gate_up, &l.down}) {
      add(*w);
    }
  }
  add(s.final_norm);
  add(s.lm_head);
  return out;
}

absl::StatusOr<std::vector<float>> ReadFloat32(const Checkpoint& ckpt, const FusedWeight& w) {
  std::vector<float> out;
  out.reserve(static_cast<size_t>(w.numel()));
  for (const auto& part : w.parts) {
    ASSIGN_OR_RETURN(const TensorView* v, ckpt.Get(part.name, part.shape));
    const std::vector<float> f = ToFloat32(*v);
    if (static_cast<int64_t>(f.size()) != v->numel()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", part.name, "': dtype ", DTypeName(v->dtype),
                       " is not a floating-point dtype (F32, F16, BF16)"));
    }
    out.insert(out.end(), f.begin(), f.end());
  }
  return out;
}

}  // namespace muse::models
