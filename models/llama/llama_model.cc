#include "models/llama/llama_model.h"

#include <cmath>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "models/rope.h"
#include "src/runtime/batch.h"

namespace muse::models {
namespace {

at::ScalarType ToScalarType(DType d) {
  switch (d) {
    case DType::kF32: return at::kFloat;
    case DType::kF16: return at::kHalf;
    case DType::kBF16: return at::kBFloat16;
    case DType::kI64: return at::kLong;
    case DType::kI32: return at::kInt;
    case DType::kU8: return at::kByte;
  }
  return at::kFloat;
}

// y = x W^T (+ b). A single row goes through a matrix-vector product: on CPU, GEMV reads the
// weights ~3x faster than the general GEMM that at::linear would use for M = 1.
at::Tensor Linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b = {}) {
  at::Tensor y;
  if (x.size(0) == 1) {
    y = at::mv(w, x[0]).unsqueeze(0);
  } else {
    y = at::mm(x, w.t());
  }
  if (b.defined()) y.add_(b);
  return y;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Load(const Checkpoint& ckpt,
                                                            at::ScalarType dtype,
                                                            at::Device device,
                                                            const std::string& weight_prefix) {
  auto m = std::unique_ptr<LlamaModel>(new LlamaModel());
  m->config_ = ckpt.config();
  m->dtype_ = dtype;
  m->device_ = device;
  const ModelConfig& c = m->config_;
  const auto opts = at::TensorOptions().dtype(dtype).device(device);

  // Views into the mmapped file; the copy below owns the data, so the mapping can go afterwards.
  auto load = [&](const std::string& name,
                  const std::vector<int64_t>& shape) -> absl::StatusOr<at::Tensor> {
    ASSIGN_OR_RETURN(const TensorView* v, ckpt.Get(weight_prefix + name, shape));
    at::Tensor t = at::from_blob(const_cast<void*>(v->data), v->shape,
                                 at::TensorOptions().dtype(ToScalarType(v->dtype)));
    return t.to(opts, /*non_blocking=*/false, /*copy=*/true);
  };

  const int64_t H = c.hidden_size, I = c.intermediate_size, D = c.head_dim;
  const int64_t nH = c.num_attention_heads, nKV = c.num_key_value_heads, V = c.vocab_size;
  ASSIGN_OR_RETURN(m->embed_, load("model.embed_tokens.weight", {V, H}));
  ASSIGN_OR_RETURN(m->final_norm_, load("model.norm.weight", {H}));
  if (c.tie_word_embeddings) {
    m->lm_head_ = m->embed_;
  } else {
    ASSIGN_OR_RETURN(m->lm_head_, load("lm_head.weight", {V, H}));
  }
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    LlamaLayerWeights w;
    ASSIGN_OR_RETURN(w.input_norm, load(p + "input_layernorm.weight", {H}));
    ASSIGN_OR_RETURN(w.post_norm, load(p + "post_attention_layernorm.weight", {H}));
    ASSIGN_OR_RETURN(at::Tensor q, load(p + "self_attn.q_proj.weight", {nH * D, H}));
    ASSIGN_OR_RETURN(at::Tensor k, load(p + "self_attn.k_proj.weight", {nKV * D, H}));
    ASSIGN_OR_RETURN(at::Tensor v, load(p + "self_attn.v_proj.weight", {nKV * D, H}));
    w.qkv = at::cat({q, k, v}, 0).contiguous();
    if (c.attention_bias) {
      ASSIGN_OR_RETURN(at::Tensor qb, load(p + "self_attn.q_proj.bias", {nH * D}));
      ASSIGN_OR_RETURN(at::Tensor kb, load(p + "self_attn.k_proj.bias", {nKV * D}));
      ASSIGN_OR_RETURN(at::Tensor vb, load(p + "self_attn.v_proj.bias", {nKV * D}));
      w.qkv_bias = at::cat({qb, kb, vb}, 0).contiguous();
    }
    ASSIGN_OR_RETURN(w.o_proj, load(p + "self_attn.o_proj.weight", {H, nH * D}));
    if (OProjHasBias(c)) {
      ASSIGN_OR_RETURN(w.o_bias, load(p + "self_attn.o_proj.bias", {H}));
    }
    ASSIGN_OR_RETURN(at::Tensor gate, load(p + "mlp.gate_proj.weight", {I, H}));
    ASSIGN_OR_RETURN(at::Tensor up, load(p + "mlp.up_proj.weight", {I, H}));
    w.gate_up = at::cat({gate, up}, 0).contiguous();
    ASSIGN_OR_RETURN(w.down, load(p + "mlp.down_proj.weight", {H, I}));
    m->layers_.push_back(std::move(w));
  }
  const std::vector<float> inv = RopeInvFreq(c);
  m->inv_freq_ = at::tensor(inv, at::kFloat).to(device);
  return m;
}

at::Tensor LlamaModel::Embed(const at::Tensor& ids) const { return embed_.index_select(0, ids); }

at::Tensor LlamaModel::RmsNorm(const at::Tensor& x, const at::Tensor& weight) const {
  // As HF: normalise in fp32, cast back, then scale.
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor var = xf.pow(2).mean({-1}, /*keepdim=*/true);
  at::Tensor y = (xf * at::rsqrt(var + config_.rms_norm_eps)).to(x.scalar_type());
  return weight * y;
}

namespace {

// x: [T, n, D]; cos/sin: [T, 1, D/2] (compute dtype). HF rotate_half convention.
at::Tensor ApplyRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor x1 = x.narrow(-1, 0, half);
  at::Tensor x2 = x.narrow(-1, half, half);
  return at::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, -1);
}

}  // namespace

at::Tensor LlamaModel::Attention(const LlamaLayerWeights& w, const at::Tensor& x,
                                 const at::Tensor& cos, const at::Tensor& sin,
                                 const AttentionMeta& meta, at::Tensor& k_cache,
                                 at::Tensor& v_cache) const {
  const int64_t T = x.size(0);
  const int64_t nH = config_.num_attention_heads, nKV = config_.num_key_value_heads;
  const int64_t D = config_.head_dim, g = nH / nKV;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));

  at::Tensor qkv = Linear(x, w.qkv, w.qkv_bias);  // [T, (nH + 2 nKV) D]
  at::Tensor q = ApplyRope(qkv.narrow(1, 0, nH * D).view({T, nH, D}), cos, sin);
  at::Tensor k = ApplyRope(qkv.narrow(1, nH * D, nKV * D).view({T, nKV, D}), cos, sin);
  at::Tensor v = qkv.narrow(1, (nH + nKV) * D, nKV * D).reshape({T, nKV, D});

  // Write the new K/V through the slot mapping, then attend over the paged context.
  at::Tensor k_flat = k_cache.view({-1, nKV, D});
  at::Tensor v_flat = v_cache.view({-1, nKV, D});
  if (meta.write_slots.numel() == T) {
    k_flat.index_copy_(0, meta.write_slots, k);
    v_flat.index_copy_(0, meta.write_slots, v);
  } else if (meta.write_slots.numel() > 0) {
    k_flat.index_copy_(0, meta.write_slots, k.index_select(0, meta.write_token_idx));
    v_flat.index_copy_(0, meta.write_slots, v.index_select(0, meta.write_token_idx));
  }

  at::Tensor out = at::empty({T, nH * D}, x.options());
  if (meta.dec_token_idx.defined() && meta.dec_token_idx.numel() > 0) {
    const int64_t B = meta.dec_token_idx.size(0);
    const int64_t L = meta.dec_blocks.size(1) * runtime::kBlockSize;
    at::Tensor blocks = meta.dec_blocks.reshape({-1});
    // [B, L, nKV, D] -> [B, nKV, L, D]
    at::Tensor kc = k_cache.index_select(0, blocks).view({B, L, nKV, D}).permute({0, 2, 1, 3});
    at::Tensor vc = v_cache.index_select(0, blocks).view({B, L, nKV, D}).permute({0, 2, 1, 3});
    at::Tensor qd = (T == B ? q : q.index_select(0, meta.dec_token_idx)).view({B, nKV, g, D});
    at::Tensor s = at::matmul(qd, kc.transpose(2, 3)).mul_(scale).add_(meta.dec_mask);
    at::Tensor p = at::softmax(s, -1);
    at::Tensor o = at::matmul(p, vc).reshape({B, nH * D});  // [B, nKV, g, D]
    if (T == B) {
      out = o;
    } else {
      out.index_copy_(0, meta.dec_token_idx, o);
    }
  }
  for (const auto& ch : meta.chunks) {
    const int64_t Lq = ch.q_len, L = ch.seq_len;
    at::Tensor kc = k_cache.index_select(0, ch.blocks).view({-1, nKV, D}).narrow(0, 0, L);
    at::Tensor vc = v_cache.index_select(0, ch.blocks).view({-1, nKV, D}).narrow(0, 0, L);
    // q: [Lq, nKV, g, D] -> [nKV, g, Lq, D]; k: [L, nKV, D] -> [nKV, 1, D, L]
    at::Tensor qc = q.narrow(0, ch.token_begin, Lq).view({Lq, nKV, g, D}).permute({1, 2, 0, 3});
    at::Tensor s = at::matmul(qc, kc.permute({1, 2, 0}).unsqueeze(1)).mul_(scale).add_(ch.mask);
    at::Tensor p = at::softmax(s, -1);
    at::Tensor o = at::matmul(p, vc.permute({1, 0, 2}).unsqueeze(1));  // [nKV, g, Lq, D]
    out.narrow(0, ch.token_begin, Lq).copy_(o.permute({2, 0, 1, 3}).reshape({Lq, nH * D}));
  }
  return Linear(out, w.o_proj, w.o_bias);
}

at::Tensor LlamaModel::Forward(at::Tensor h, const at::Tensor& positions,
                               const AttentionMeta& meta, std::vector<at::Tensor>& k_caches,
                               std::vector<at::Tensor>& v_caches) const {
  // cos/sin computed per step in fp32 as HF does (positions x inv_freq), then cast.
  at::Tensor freqs = positions.to(at::kFloat).unsqueeze(1) * inv_freq_.unsqueeze(0);  // [T, D/2]
  at::Tensor cos = freqs.cos().to(dtype_).unsqueeze(1);
  at::Tensor sin = freqs.sin().to(dtype_).unsqueeze(1);
  const int64_t I = config_.intermediate_size;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const auto& w = layers_[i];
    h = h + Attention(w, RmsNorm(h, w.input_norm), cos, sin, meta, k_caches[i], v_caches[i]);
    at::Tensor gu = Linear(RmsNorm(h, w.post_norm), w.gate_up);  // [T, 2I]
    at::Tensor act = at::silu(gu.narrow(1, 0, I)).mul_(gu.narrow(1, I, I));
    h = h + Linear(act, w.down);
  }
  return h;
}

at::Tensor LlamaModel::Logits(const at::Tensor& hidden_rows) const {
  return Linear(RmsNorm(hidden_rows, final_norm_), lm_head_).to(at::kFloat);
}

}  // namespace muse::models
