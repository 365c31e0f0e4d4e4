#include "models/llama/llama_cuda_model.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/activation.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/cache.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/rows.h"
#include "kernels/rope_freqs.h"
#include "models/cuda_status.h"
#include "models/half.h"
#include "models/llama/llama_weights.h"
#include "models/rope.h"

namespace muse::models {
namespace {
namespace k = ::muse::kernels;
}  // namespace

LlamaCudaModel::~LlamaCudaModel() {
  for (void* p : allocations_) cudaFree(p);
}

int64_t LlamaCudaModel::qkv_width() const {
  return (config_.num_attention_heads + 2 * config_.num_key_value_heads) * config_.head_dim;
}

absl::StatusOr<std::unique_ptr<LlamaCudaModel>> LlamaCudaModel::Load(
    const Checkpoint& ckpt, const std::string& weight_prefix, k::DType dtype) {
  if (dtype != k::DType::kBFloat16 && dtype != k::DType::kFloat16) {
    return absl::InvalidArgumentError("dtype: the CUDA model runs in bfloat16 or float16");
  }
  auto m = std::unique_ptr<LlamaCudaModel>(new LlamaCudaModel());
  m->config_ = ckpt.config();
  m->dtype_ = dtype;
  const ModelConfig& c = m->config_;
  auto alloc = [&](size_t bytes) -> absl::StatusOr<void*> {
    void* p = nullptr;
    MUSE_CUDA_RETURN(cudaMalloc(&p, std::max<size_t>(bytes, 16)));
    m->allocations_.push_back(p);
    return p;
  };
  // Host fp32 -> runtime dtype -> device, one fused weight at a time.
  auto upload = [&](const FusedWeight& w) -> absl::StatusOr<void*> {
    if (!w.present()) return nullptr;
    ASSIGN_OR_RETURN(std::vector<float> f, ReadFloat32(ckpt, w));
    std::vector<uint16_t> host(f.size());
    for (size_t i = 0; i < f.size(); ++i) {
      host[i] = dtype == k::DType::kFloat16 ? FloatToF16(f[i]) : FloatToBf16(f[i]);
    }
    ASSIGN_OR_RETURN(void* d, alloc(host.size() * 2));
    MUSE_CUDA_RETURN(cudaMemcpy(d, host.data(), host.size() * 2, cudaMemcpyHostToDevice));
    return d;
  };
  const LlamaWeightSpec spec = MakeLlamaWeightSpec(c, weight_prefix);
  for (const LlamaLayerSpec& ls : spec.layers) {
    Layer l;
    ASSIGN_OR_RETURN(l.in_norm, upload(ls.input_norm));
    ASSIGN_OR_RETURN(l.post_norm, upload(ls.post_norm));
    ASSIGN_OR_RETURN(l.qkv, upload(ls.qkv));
    ASSIGN_OR_RETURN(l.qkv_bias, upload(ls.qkv_bias));
    ASSIGN_OR_RETURN(l.o, upload(ls.o_proj));
    ASSIGN_OR_RETURN(l.o_bias, upload(ls.o_bias));
    ASSIGN_OR_RETURN(l.gate_up, upload(ls.gate_up));
    ASSIGN_OR_RETURN(l.down, upload(ls.down));
    m->layers_.push_back(l);
  }
  ASSIGN_OR_RETURN(m->embed_, upload(spec.embed));
  ASSIGN_OR_RETURN(m->final_norm_, upload(spec.final_norm));
  if (spec.lm_head.present()) {
    ASSIGN_OR_RETURN(m->lm_head_, upload(spec.lm_head));
  } else {
    m->lm_head_ = m->embed_;
  }

  // RoPE tables for every position the model accepts.
  m->max_positions_ = static_cast<int>(std::max<int64_t>(c.max_position_embeddings, 1));
  std::vector<float> cs, sn;
  k::rope_cos_sin_cache(RopeInvFreq(c), m->max_positions_, &cs, &sn);
  ASSIGN_OR_RETURN(void* cos, alloc(cs.size() * 4));
  ASSIGN_OR_RETURN(void* sin, alloc(sn.size() * 4));
  m->cos_ = static_cast<float*>(cos);
  m->sin_ = static_cast<float*>(sin);
  MUSE_CUDA_RETURN(cudaMemcpy(m->cos_, cs.data(), cs.size() * 4, cudaMemcpyHostToDevice));
  MUSE_CUDA_RETURN(cudaMemcpy(m->sin_, sn.data(), sn.size() * 4, cudaMemcpyHostToDevice));
  return m;
}

std::array<size_t, CudaActivations::kCount> LlamaCudaModel::ActivationBytes(int64_t t) const {
  const int64_t H = config_.hidden_size, I = config_.intermediate_size;
  const int64_t qd = config_.num_attention_heads * config_.head_dim;
  const size_t e = k::dtype_size(dtype_);
  auto b = [&](int64_t elems) { return static_cast<size_t>(elems) * e; };
  // h, x, qkv, qdec, attn, o_out, gu, act
  return {b(t * H),  b(t * H), b(t * qkv_width()), b(t * qd),
          b(t * qd), b(t * H), b(t * 2 * I),       b(t * I)};
}

size_t LlamaCudaModel::RowBytes(int64_t rows) const {
  return static_cast<size_t>(rows) * config_.hidden_size * k::dtype_size(dtype_);
}

namespace {

k::PagedDecodeParams DecodeParams(const ModelConfig& c, const CudaStepShape& s, k::DType dt) {
  k::PagedDecodeParams p{};
  p.num_seqs = s.seqs;
  p.num_heads = static_cast<int>(c.num_attention_heads);
  p.num_kv_heads = static_cast<int>(c.num_key_value_heads);
  p.head_dim = static_cast<int>(c.head_dim);
  p.max_blocks_per_seq = s.table_width;
  p.max_seq_len = s.max_seq_len;
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
  p.sliding_window = static_cast<int>(c.sliding_window);
  p.dtype = dt;
  return p;
}

}  // namespace

size_t LlamaCudaModel::DecodeWorkspaceBytes(const CudaStepShape& s) const {
  return s.decode ? k::paged_decode_workspace_size(DecodeParams(config_, s, dtype_)) : 0;
}

absl::Status LlamaCudaModel::Forward(const CudaStepShape& s, const CudaStepMeta& meta,
                                     const CudaActivations& a, const std::vector<void*>& k_caches,
                                     const std::vector<void*>& v_caches,
                                     const std::vector<CudaEmbeddingRows>& embedding_rows,
                                     cublasHandle_t blas, cudaStream_t stream) const {
  const ModelConfig& c = config_;
  const k::DType dt = dtype_;
  const int T = s.tokens;
  const int64_t H = c.hidden_size, I = c.intermediate_size, D = c.head_dim;
  const int nH = static_cast<int>(c.num_attention_heads);
  const int nKV = static_cast<int>(c.num_key_value_heads);
  const int64_t qw = qkv_width();
  const size_t elem = k::dtype_size(dt);
  const float eps = static_cast<float>(c.rms_norm_eps);
  char* qkv_b = static_cast<char*>(a.qkv);
  // out = rmsnorm(residual += input) (residual null: out = rmsnorm(input)) over the T rows.
  auto norm = [&](void* out, const void* input, void* residual, const void* weight) {
    k::RmsNormParams p{out, input, residual, weight};
    p.num_tokens = T;
    p.hidden = static_cast<int>(H);
    p.eps = eps;
    p.dtype = dt;
    return k::launch_rms_norm(p, stream);
  };
  // x[T, cols] += bias.
  auto add_bias = [&](void* xp, const void* bias, int64_t cols) {
    k::AddBiasParams p{xp, bias};
    p.num_rows = T;
    p.cols = static_cast<int>(cols);
    p.dtype = dt;
    return k::launch_add_bias(p, stream);
  };
  // y[m, n] = x[m, kdim] W[n, kdim]^T.
  auto gemm = [&](void* y, const void* x, int64_t m, int64_t kdim, const void* w, int64_t n,
                  bool y_fp32 = false) {
    k::GemmParams p{y, x, w};
    p.m = m;
    p.n = n;
    p.k = kdim;
    p.y_fp32 = y_fp32;
    p.dtype = dt;
    return k::launch_gemm(p, blas, stream);
  };

  k::GatherRowsParams emb{a.h, embed_, meta.ids};
  emb.num_rows = T;
  emb.row_elems = static_cast<int>(H);
  emb.dtype = dt;
  MUSE_CUDA_RETURN(k::launch_gather_rows(emb, stream));
  for (const CudaEmbeddingRows& e : embedding_rows) {
    MUSE_CUDA_RETURN(cudaMemcpyAsync(static_cast<char*>(a.h) + e.token_index * H * elem, e.src,
                                     e.num_rows * H * elem, cudaMemcpyHostToDevice, stream));
  }

  for (size_t li = 0; li < layers_.size(); ++li) {
    const Layer& l = layers_[li];
    MUSE_CUDA_RETURN(norm(a.x, li == 0 ? a.h : a.o_out, li == 0 ? nullptr : a.h, l.in_norm));
    MUSE_CUBLAS_RETURN(gemm(a.qkv, a.x, T, H, l.qkv, qw));
    if (l.qkv_bias != nullptr) MUSE_CUDA_RETURN(add_bias(a.qkv, l.qkv_bias, qw));
    k::RopeParams rope{a.qkv, qkv_b + nH * D * elem, meta.positions, cos_, sin_};
    rope.num_tokens = T;
    rope.num_heads = nH;
    rope.num_kv_heads = nKV;
    rope.head_dim = static_cast<int>(D);
    rope.q_stride = rope.k_stride = qw;
    rope.dtype = dt;
    MUSE_CUDA_RETURN(k::launch_rope(rope, stream));
    k::ReshapeAndCacheParams cache{qkv_b + nH * D * elem, qkv_b + (nH + nKV) * D * elem,
                                   k_caches[li], v_caches[li], meta.slots};
    cache.num_tokens = T;
    cache.num_kv_heads = nKV;
    cache.head_dim = static_cast<int>(D);
    cache.key_stride = cache.value_stride = qw;
    cache.dtype = dt;
    MUSE_CUDA_RETURN(k::launch_reshape_and_cache(cache, stream));
    if (s.decode) {
      // The decode kernel reads q densely: [seqs, nH, D] out of the fused qkv rows.
      MUSE_CUDA_RETURN(cudaMemcpy2DAsync(a.qdec, nH * D * elem, a.qkv, qw * elem, nH * D * elem, T,
                                         cudaMemcpyDeviceToDevice, stream));
      k::PagedDecodeParams p = DecodeParams(c, s, dt);
      p.out = a.attn;
      p.q = a.qdec;
      p.k_cache = k_caches[li];
      p.v_cache = v_caches[li];
      p.block_tables = meta.block_tables;
      p.seq_lens = meta.seq_lens;
      p.workspace = a.decode_workspace;
      p.workspace_bytes = a.decode_workspace_bytes;
      MUSE_CUDA_RETURN(k::launch_paged_decode_attention(p, stream));
    } else {
      k::PagedPrefillParams p{};
      p.out = a.attn;
      p.q = a.qkv;
      p.k_cache = k_caches[li];
      p.v_cache = v_caches[li];
      p.query_start_loc = meta.query_start_loc;
      p.seq_lens = meta.seq_lens;
      p.block_tables = meta.block_tables;
      p.num_seqs = s.seqs;
      p.num_heads = nH;
      p.num_kv_heads = nKV;
      p.head_dim = static_cast<int>(D);
      p.max_blocks_per_seq = s.table_width;
      p.max_query_len = s.max_query_len;
      p.q_stride = qw;
      p.out_stride = nH * D;
      p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
      p.sliding_window = static_cast<int>(c.sliding_window);
      p.dtype = dt;
      MUSE_CUDA_RETURN(k::launch_paged_prefill_attention(p, stream));
    }
    MUSE_CUBLAS_RETURN(gemm(a.o_out, a.attn, T, nH * D, l.o, H));
    if (l.o_bias != nullptr) MUSE_CUDA_RETURN(add_bias(a.o_out, l.o_bias, H));
    MUSE_CUDA_RETURN(norm(a.x, a.o_out, a.h, l.post_norm));
    MUSE_CUBLAS_RETURN(gemm(a.gu, a.x, T, H, l.gate_up, 2 * I));
    k::SiluAndMulParams silu{a.act, a.gu};
    silu.num_tokens = T;
    silu.inter = static_cast<int>(I);
    silu.dtype = dt;
    MUSE_CUDA_RETURN(k::launch_silu_and_mul(silu, stream));
    MUSE_CUBLAS_RETURN(gemm(a.o_out, a.act, T, I, l.down, H));
  }
  // No layers: the embeddings go straight to the final norm (no residual to add).
  const bool any = !layers_.empty();
  MUSE_CUDA_RETURN(norm(a.x, any ? a.o_out : a.h, any ? a.h : nullptr, final_norm_));
  k::GatherRowsParams pick{a.rows, a.x, meta.logits_rows};
  pick.num_rows = s.rows;
  pick.row_elems = static_cast<int>(H);
  pick.dtype = dt;
  MUSE_CUDA_RETURN(k::launch_gather_rows(pick, stream));
  MUSE_CUBLAS_RETURN(gemm(a.logits, a.rows, s.rows, H, lm_head_, c.vocab_size, /*y_fp32=*/true));
  return absl::OkStatus();
}

}  // namespace muse::models
