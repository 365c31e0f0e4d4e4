#include "models/llama/llama_cpu_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cpu/rms_norm.h"
#include "kernels/cpu/rope.h"
#include "models/llama/llama_weights.h"
#include "models/rope.h"

namespace muse::models {
namespace {

namespace cpu = kernels::cpu;

void Grow(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(n);
}

}  // namespace

absl::StatusOr<std::unique_ptr<LlamaCpuModel>> LlamaCpuModel::Load(const Checkpoint& ckpt,
                                                                   const std::string& weight_prefix,
                                                                   int threads,
                                                                   collective::Communicator* comm) {
  auto m = std::unique_ptr<LlamaCpuModel>(new LlamaCpuModel(threads));
  const ModelConfig& c = ckpt.config();
  m->config_ = c;
  const int rank = comm != nullptr ? comm->rank() : 0;
  const int size = comm != nullptr ? comm->size() : 1;
  ASSIGN_OR_RETURN(m->shard_, MakeTensorParallelShard(c, rank, size));
  if (size > 1) m->comm_ = comm;
  const TensorParallelShard& s = m->shard_;
  const int64_t H = c.hidden_size, D = c.head_dim, I = c.intermediate_size;
  const int64_t nH = c.num_attention_heads, nKV = c.num_key_value_heads;
  const LlamaWeightSpec spec = MakeLlamaWeightSpec(c, weight_prefix);
  auto read = [&](const FusedWeight& w) -> absl::StatusOr<std::vector<float>> {
    if (!w.present()) return std::vector<float>{};
    return ReadFloat32(ckpt, w);
  };
  // This rank's q, k and v rows (or bias entries) of the fused [(nH + 2 nKV) D, cols] weight.
  auto qkv_rows = [&](const std::vector<float>& w, int64_t cols) {
    std::vector<float> out;
    if (w.empty()) return out;
    out.reserve((s.num_heads + 2 * s.num_kv_heads) * D * cols);
    auto take = [&](int64_t row0, int64_t rows) {
      out.insert(out.end(), w.begin() + row0 * cols, w.begin() + (row0 + rows) * cols);
    };
    take(s.q_head0 * D, s.num_heads * D);
    take((nH + s.kv_head0) * D, s.num_kv_heads * D);
    take((nH + nKV + s.kv_head0) * D, s.num_kv_heads * D);
    return out;
  };
  // Columns [col0, col0 + n) of a row-major [rows, cols] matrix.
  auto columns = [](const std::vector<float>& w, int64_t rows, int64_t cols, int64_t col0,
                    int64_t n) {
    std::vector<float> out(rows * n);
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(out.data() + r * n, w.data() + r * cols + col0, n * sizeof(float));
    }
    return out;
  };
  for (const LlamaLayerSpec& ls : spec.layers) {
    Layer l;
    ASSIGN_OR_RETURN(l.input_norm, read(ls.input_norm));
    ASSIGN_OR_RETURN(l.post_norm, read(ls.post_norm));
    ASSIGN_OR_RETURN(std::vector<float> qkv, read(ls.qkv));
    const std::vector<float> qkv_local = qkv_rows(qkv, H);
    l.qkv = cpu::PackedWeight::Pack(qkv_local.data(), (s.num_heads + 2 * s.num_kv_heads) * D, H);
    ASSIGN_OR_RETURN(std::vector<float> qkv_bias, read(ls.qkv_bias));
    l.qkv_bias = qkv_rows(qkv_bias, 1);
    ASSIGN_OR_RETURN(std::vector<float> o_proj, read(ls.o_proj));
    const std::vector<float> o_local = columns(o_proj, H, nH * D, s.q_head0 * D, s.num_heads * D);
    l.o_proj = cpu::PackedWeight::Pack(o_local.data(), H, s.num_heads * D);
    // The row-parallel bias is added once, by rank 0, before the all-reduce.
    if (rank == 0) {
      ASSIGN_OR_RETURN(l.o_bias, read(ls.o_bias));
    }
    // gate and up interleaved panel by panel for the SwiGLU epilogue.
    ASSIGN_OR_RETURN(std::vector<float> gate_up, read(ls.gate_up));
    l.gate_up = cpu::PackSwiGlu(gate_up.data() + s.inter0 * H, gate_up.data() + (I + s.inter0) * H,
                                s.inter, H);
    ASSIGN_OR_RETURN(std::vector<float> down, read(ls.down));
    const std::vector<float> down_local = columns(down, H, I, s.inter0, s.inter);
    l.down = cpu::PackedWeight::Pack(down_local.data(), H, s.inter);
    m->layers_.push_back(std::move(l));
  }
  ASSIGN_OR_RETURN(m->final_norm_, read(spec.final_norm));
  ASSIGN_OR_RETURN(std::vector<float> embed, read(spec.embed));
  std::vector<float> head;
  if (spec.lm_head.present()) {
    ASSIGN_OR_RETURN(head, read(spec.lm_head));
  }
  const std::vector<float>& head_rows = spec.lm_head.present() ? head : embed;  // tied: embed
  if (size == 1 && !spec.lm_head.present()) {
    // Tied, one rank: the packed head is the only copy; embedding rows are read back with CopyRow.
    m->lm_head_ = cpu::PackedWeight::Pack(embed.data(), c.vocab_size, H);
  } else {
    // This rank's vocabulary rows, zero-padded to vocab_per_rank so every rank gathers as many.
    std::vector<float> rows(s.vocab_per_rank * H, 0.0f);
    std::memcpy(rows.data(), head_rows.data() + s.vocab0 * H, s.vocab_rows * H * sizeof(float));
    m->lm_head_ = cpu::PackedWeight::Pack(rows.data(), s.vocab_per_rank, H);
    m->embed_ = std::move(embed);
  }
  m->inv_freq_ = RopeInvFreq(c);
  return m;
}

absl::Status LlamaCpuModel::Forward(const models::Batch& b, const std::vector<float*>& k_caches,
                                    const std::vector<float*>& v_caches, float* logits) {
  const ModelConfig& c = config_;
  const int64_t T = b.num_tokens(), H = c.hidden_size, D = c.head_dim, I = shard_.inter;
  const int64_t nH = shard_.num_heads, nKV = shard_.num_kv_heads;
  // Row-parallel projections: rank 0 adds its partial product to the residual stream, the others
  // write theirs, and the all-reduce sums them into the same hidden state on every rank.
  const bool accumulate = shard_.rank == 0;
  const int64_t qkv_w = (nH + 2 * nKV) * D, half = D / 2;
  const float eps = static_cast<float>(c.rms_norm_eps);
  Grow(h_, T * H);
  Grow(xn_, T * H);
  Grow(qkv_, T * qkv_w);
  Grow(attn_, T * nH * D);
  Grow(act_, T * I);
  Grow(cos_, T * half);
  Grow(sin_, T * half);

  // Embeddings (rows of the tied lm_head when there is no separate table), then image rows.
  for (int64_t t = 0; t < T; ++t) {
    const int64_t id = b.input_ids[t];
    if (embed_.empty()) {
      lm_head_.CopyRow(id, h_.data() + t * H);
    } else {
      std::memcpy(h_.data() + t * H, embed_.data() + id * H, H * sizeof(float));
    }
  }
  for (const auto& e : b.embedding_overrides) {
    std::memcpy(h_.data() + static_cast<int64_t>(e.token_index) * H, e.data,
                static_cast<size_t>(e.num_rows) * H * sizeof(float));
  }
  // RoPE angles in fp32 as HF computes them (position x inv_freq), shared by every layer.
  for (int64_t t = 0; t < T; ++t) {
    const float p = static_cast<float>(b.positions[t]);
    for (int64_t i = 0; i < half; ++i) {
      const float f = p * inv_freq_[i];
      cos_[t * half + i] = std::cos(f);
      sin_[t * half + i] = std::sin(f);
    }
  }

  cpu::PagedAttentionArgs att;
  att.q = qkv_.data();
  att.q_stride = qkv_w;
  att.out = attn_.data();
  att.out_stride = nH * D;
  att.num_heads = static_cast<int>(nH);
  att.num_kv_heads = static_cast<int>(nKV);
  att.head_dim = static_cast<int>(D);
  att.block_size = kernels::kKvBlockSize;
  att.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  att.sliding_window = static_cast<int>(c.sliding_window);
  att.num_seqs = b.num_seqs();
  att.query_start_loc = b.query_start_loc.data();
  att.seq_lens = b.seq_lens.data();
  att.block_tables = b.block_tables.data();
  att.max_blocks_per_seq = b.max_blocks_per_seq;

  const int64_t kv_row = nKV * D;
  for (size_t li = 0; li < layers_.size(); ++li) {
    const Layer& l = layers_[li];
    cpu::RmsNorm(h_.data(), H, l.input_norm.data(), T, H, eps, xn_.data(), H, pool_);
    cpu::GemmArgs g{xn_.data(), T, H, qkv_.data(), qkv_w};
    g.bias = l.qkv_bias.empty() ? nullptr : l.qkv_bias.data();
    cpu::PackedGemm(g, l.qkv, pool_);
    cpu::ApplyRope(qkv_.data(), qkv_w, T, nH + nKV, D, cos_.data(), sin_.data(), pool_);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t slot = b.slot_mapping[t];
      if (slot < 0) continue;
      const float* k = qkv_.data() + t * qkv_w + nH * D;
      std::memcpy(k_caches[li] + slot * kv_row, k, kv_row * sizeof(float));
      std::memcpy(v_caches[li] + slot * kv_row, k + kv_row, kv_row * sizeof(float));
    }
    att.k_cache = k_caches[li];
    att.v_cache = v_caches[li];
    cpu::PagedAttention(att, pool_);
    cpu::PackedGemm({attn_.data(), T, nH * D, h_.data(), H,
                     l.o_bias.empty() ? nullptr : l.o_bias.data(), accumulate},
                    l.o_proj, pool_);
    if (comm_ != nullptr) RETURN_IF_ERROR(comm_->AllReduceSum(h_.data(), T * H));
    cpu::RmsNorm(h_.data(), H, l.post_norm.data(), T, H, eps, xn_.data(), H, pool_);
    cpu::PackedGemmSwiGlu({xn_.data(), T, H, act_.data(), I}, l.gate_up, pool_);
    cpu::PackedGemm({act_.data(), T, I, h_.data(), H, nullptr, accumulate}, l.down, pool_);
    if (comm_ != nullptr) RETURN_IF_ERROR(comm_->AllReduceSum(h_.data(), T * H));
  }

  const int64_t R = static_cast<int64_t>(b.logits_indices.size());
  if (R == 0) return absl::OkStatus();
  Grow(rows_, R * H);
  for (int64_t r = 0; r < R; ++r) {
    cpu::RmsNorm(h_.data() + static_cast<int64_t>(b.logits_indices[r]) * H, H, final_norm_.data(),
                 1, H, eps, rows_.data() + r * H, H, pool_);
  }
  if (comm_ == nullptr) {
    cpu::PackedGemm({rows_.data(), R, H, logits, c.vocab_size}, lm_head_, pool_);
    return absl::OkStatus();
  }
  // Vocab-parallel head: [R, vocab_per_rank] here, gathered as [ranks, R, vocab_per_rank], then
  // each rank's columns placed at its vocabulary offset (the padding rows dropped).
  const int64_t Vp = shard_.vocab_per_rank, N = shard_.size;
  Grow(local_logits_, R * Vp);
  Grow(gathered_logits_, N * R * Vp);
  cpu::PackedGemm({rows_.data(), R, H, local_logits_.data(), Vp}, lm_head_, pool_);
  RETURN_IF_ERROR(comm_->AllGather(local_logits_.data(), R * Vp, gathered_logits_.data()));
  for (int64_t n = 0; n < N; ++n) {
    const int64_t v0 = n * Vp, cols = std::max<int64_t>(0, std::min(Vp, c.vocab_size - v0));
    for (int64_t r = 0; r < R; ++r) {
      std::memcpy(logits + r * c.vocab_size + v0, gathered_logits_.data() + (n * R + r) * Vp,
                  cols * sizeof(float));
    }
  }
  return absl::OkStatus();
}

}  // namespace muse::models
