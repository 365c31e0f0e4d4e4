#include "models/llama/llama_aten_model.h"

#include <ATen/ATen.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "models/batch.h"
#include "models/llama/llama_weights.h"
#include "models/rope.h"

namespace muse::models {
namespace {

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

absl::StatusOr<std::unique_ptr<LlamaAtenModel>> LlamaAtenModel::Load(
    const Checkpoint& ckpt, at::ScalarType dtype, at::Device device,
    const std::string& weight_prefix) {
  auto m = std::unique_ptr<LlamaAtenModel>(new LlamaAtenModel());
  m->config_ = ckpt.config();
  m->dtype_ = dtype;
  m->device_ = device;
  const ModelConfig& c = m->config_;
  const auto opts = at::TensorOptions().dtype(dtype).device(device);

  // Each fused weight is read as fp32 and cast once to the runtime dtype (fp32 -> bf16/fp16 rounds
  // to nearest even, as at::to would from the checkpoint's own dtype).
  const LlamaWeightSpec spec = MakeLlamaWeightSpec(c, weight_prefix);
  auto load = [&](const FusedWeight& w) -> absl::StatusOr<at::Tensor> {
    if (!w.present()) return at::Tensor();
    ASSIGN_OR_RETURN(std::vector<float> f, ReadFloat32(ckpt, w));
    std::vector<int64_t> shape = w.parts[0].shape;
    shape[0] = w.rows();
    return at::from_blob(f.data(), shape, at::kFloat)
        .to(opts, /*non_blocking=*/false, /*copy=*/true);
  };
  ASSIGN_OR_RETURN(m->embed_, load(spec.embed));
  ASSIGN_OR_RETURN(m->final_norm_, load(spec.final_norm));
  if (spec.lm_head.present()) {
    ASSIGN_OR_RETURN(m->lm_head_, load(spec.lm_head));
  } else {
    m->lm_head_ = m->embed_;
  }
  for (const LlamaLayerSpec& ls : spec.layers) {
    LlamaLayerWeights w;
    ASSIGN_OR_RETURN(w.input_norm, load(ls.input_norm));
    ASSIGN_OR_RETURN(w.post_norm, load(ls.post_norm));
    ASSIGN_OR_RETURN(w.qkv, load(ls.qkv));
    ASSIGN_OR_RETURN(w.qkv_bias, load(ls.qkv_bias));
    ASSIGN_OR_RETURN(w.o_proj, load(ls.o_proj));
    ASSIGN_OR_RETURN(w.o_bias, load(ls.o_bias));
    ASSIGN_OR_RETURN(w.gate_up, load(ls.gate_up));
    ASSIGN_OR_RETURN(w.down, load(ls.down));
    m->layers_.push_back(std::move(w));
  }
  const std::vector<float> inv = RopeInvFreq(c);
  m->inv_freq_ = at::tensor(inv, at::kFloat).to(device);
  return m;
}

at::Tensor LlamaAtenModel::Embed(const at::Tensor& ids) const {
  return embed_.index_select(0, ids);
}

at::Tensor LlamaAtenModel::RmsNorm(const at::Tensor& x, const at::Tensor& weight) const {
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

at::Tensor LlamaAtenModel::Attention(const LlamaLayerWeights& w, const at::Tensor& x,
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
    const int64_t L = meta.dec_blocks.size(1) * kernels::kKvBlockSize;
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

at::Tensor LlamaAtenModel::Forward(at::Tensor h, const at::Tensor& positions,
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

at::Tensor LlamaAtenModel::Logits(const at::Tensor& hidden_rows) const {
  return Linear(RmsNorm(hidden_rows, final_norm_), lm_head_).to(at::kFloat);
}

}  // namespace muse::models
