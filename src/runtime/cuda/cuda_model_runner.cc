#include "src/runtime/cuda/cuda_model_runner.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "activation.h"
#include "attention.h"
#include "cache.h"
#include "models/checkpoint.h"
#include "models/half.h"
#include "models/llava/llava_config.h"
#include "models/rope.h"
#include "norm.h"
#include "rope.h"
#include "rows.h"
#include "spdlog/spdlog.h"
#include "src/runtime/batch_validation.h"

namespace muse::runtime {
namespace {

namespace k = ::muse::kernels;

#define MUSE_CUDA_RETURN(expr)                                                                 \
  do {                                                                                         \
    const cudaError_t e_ = (expr);                                                             \
    if (e_ != cudaSuccess) {                                                                   \
      return absl::InternalError(absl::StrCat(#expr, ": ", cudaGetErrorString(e_)));          \
    }                                                                                          \
  } while (0)

#define MUSE_CUBLAS_RETURN(expr)                                                               \
  do {                                                                                         \
    const cublasStatus_t s_ = (expr);                                                          \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                         \
      return absl::InternalError(absl::StrCat(#expr, ": cuBLAS status ", static_cast<int>(s_))); \
    }                                                                                          \
  } while (0)

struct CudaFree {
  void operator()(void* p) const { cudaFree(p); }
};
struct CudaFreeHost {
  void operator()(void* p) const { cudaFreeHost(p); }
};
using DevPtr = std::unique_ptr<void, CudaFree>;
using HostPtr = std::unique_ptr<void, CudaFreeHost>;

absl::StatusOr<DevPtr> DeviceAlloc(size_t bytes) {
  void* p = nullptr;
  MUSE_CUDA_RETURN(cudaMalloc(&p, std::max<size_t>(bytes, 16)));
  return DevPtr(p);
}

constexpr int kMaxGraphBatch = 256;
constexpr size_t kCublasWorkspace = 32u << 20;

int NextPow2(int v) {
  int p = 1;
  while (p < v) p <<= 1;
  return p;
}

}  // namespace

// Step geometry handed to RunLayers: everything the kernels need besides the device buffers.
struct StepShape {
  int tokens = 0, seqs = 0, rows = 0;
  bool decode = false;   // every sequence has exactly one new token
  int table_width = 0;   // block-table row length on the device
  int max_seq_len = 0;   // upper bound of seq_lens (sizes the split-K decode grid)
  int max_query_len = 0;
};

struct CudaModelRunner::Impl {
  models::ModelConfig cfg;
  k::DType dt = k::DType::kBFloat16;
  cudaDataType_t cuda_dt = CUDA_R_16BF;
  size_t elem = 2;
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  DevPtr blas_ws;

  struct Layer {
    void *in_norm = nullptr, *post_norm = nullptr, *qkv = nullptr, *qkv_bias = nullptr;
    void *o = nullptr, *o_bias = nullptr, *gate_up = nullptr, *down = nullptr;
  };
  std::vector<DevPtr> weights;  // owns every weight allocation
  std::vector<Layer> layers;
  void *embed = nullptr, *lm_head = nullptr, *final_norm = nullptr;

  DevPtr kv;
  std::vector<void*> k_cache, v_cache;
  int64_t num_blocks = 0, block_bytes = 0;

  DevPtr cos, sin;
  int max_pos = 0;

  // Activations, sized for cap_tokens tokens.
  int64_t cap_tokens = 0;
  DevPtr act_mem;
  void *h = nullptr, *x = nullptr, *qkv = nullptr, *qdec = nullptr, *attn = nullptr;
  void *o_out = nullptr, *gu = nullptr, *act = nullptr;
  // Rows whose logits are wanted, sized for cap_rows (prefill steps want few).
  int64_t cap_rows = 0;
  DevPtr rows_mem;
  void* rows = nullptr;
  float* logits = nullptr;
  // Step metadata on the device (fixed addresses while capacities hold: graphs point at them)
  // and its pinned host staging.
  int64_t cap_meta = 0, cap_tables = 0;
  DevPtr meta_dev, tables_dev;
  HostPtr meta_host, tables_host;
  int32_t *d_ids = nullptr, *d_pos = nullptr, *d_qsl = nullptr, *d_lens = nullptr,
          *d_lidx = nullptr, *d_tables = nullptr;
  int64_t* d_slots = nullptr;
  int32_t *h_ids = nullptr, *h_pos = nullptr, *h_qsl = nullptr, *h_lens = nullptr,
          *h_lidx = nullptr, *h_tables = nullptr;
  int64_t* h_slots = nullptr;
  DevPtr dec_ws;
  size_t dec_ws_bytes = 0;
  int64_t cap_logits = 0;
  HostPtr logits_host;
  int64_t cap_override = 0;  // pinned staging for image-embedding rows, in elements
  HostPtr override_host;

  bool use_graphs = true;
  std::map<std::pair<int, int>, cudaGraphExec_t> graphs;  // (padded batch, context bucket)

  ~Impl() {
    cudaSetDevice(device);
    ClearGraphs();
    if (blas) cublasDestroy(blas);
    if (stream) cudaStreamDestroy(stream);
  }

  void ClearGraphs() {
    for (auto& [key, exec] : graphs) cudaGraphExecDestroy(exec);
    graphs.clear();
  }

  int64_t qkv_width() const {
    return (cfg.num_attention_heads + 2 * cfg.num_key_value_heads) * cfg.head_dim;
  }

  absl::Status LoadWeights(const models::Checkpoint& ckpt, const std::string& prefix);
  absl::Status EnsureActivations(int64_t tokens);
  absl::Status EnsureRows(int64_t rows);
  absl::Status EnsureMeta(int64_t tokens, int64_t table_elems);
  absl::Status EnsureDecodeWorkspace(const StepShape& s);
  absl::Status Upload(const StepShape& s);
  absl::Status Gemm(const void* x, int64_t m, int64_t kdim, const void* w, int64_t n, void* y,
                    cudaDataType_t y_type);
  absl::Status RunLayers(const StepShape& s, const Batch* overrides_from);
  k::PagedDecodeParams DecodeParams(const StepShape& s) const;
};

absl::Status CudaModelRunner::Impl::LoadWeights(const models::Checkpoint& ckpt,
                                                const std::string& prefix) {
  const auto& c = cfg;
  const int64_t H = c.hidden_size, I = c.intermediate_size, D = c.head_dim;
  const int64_t nH = c.num_attention_heads, nKV = c.num_key_value_heads, V = c.vocab_size;
  // Host fp32 -> device dtype, one tensor (or a row-concatenation of several) at a time.
  auto upload = [&](const std::vector<std::pair<std::string, std::vector<int64_t>>>& parts)
      -> absl::StatusOr<void*> {
    std::vector<uint16_t> host;
    for (const auto& [name, shape] : parts) {
      ASSIGN_OR_RETURN(const models::TensorView* v, ckpt.Get(prefix + name, shape));
      const std::vector<float> f = models::ToFloat32(*v);
      if (static_cast<int64_t>(f.size()) != v->numel()) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor ", prefix, name, ": not a floating-point dtype"));
      }
      for (float x : f) {
        host.push_back(dt == k::DType::kFloat16 ? models::FloatToF16(x) : models::FloatToBf16(x));
      }
    }
    ASSIGN_OR_RETURN(DevPtr d, DeviceAlloc(host.size() * 2));
    MUSE_CUDA_RETURN(cudaMemcpy(d.get(), host.data(), host.size() * 2, cudaMemcpyHostToDevice));
    void* p = d.get();
    weights.push_back(std::move(d));
    return p;
  };
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    Layer l;
    ASSIGN_OR_RETURN(l.in_norm, upload({{p + "input_layernorm.weight", {H}}}));
    ASSIGN_OR_RETURN(l.post_norm, upload({{p + "post_attention_layernorm.weight", {H}}}));
    ASSIGN_OR_RETURN(l.qkv, upload({{p + "self_attn.q_proj.weight", {nH * D, H}},
                                    {p + "self_attn.k_proj.weight", {nKV * D, H}},
                                    {p + "self_attn.v_proj.weight", {nKV * D, H}}}));
    if (c.attention_bias) {
      ASSIGN_OR_RETURN(l.qkv_bias, upload({{p + "self_attn.q_proj.bias", {nH * D}},
                                           {p + "self_attn.k_proj.bias", {nKV * D}},
                                           {p + "self_attn.v_proj.bias", {nKV * D}}}));
    }
    ASSIGN_OR_RETURN(l.o, upload({{p + "self_attn.o_proj.weight", {H, nH * D}}}));
    if (models::OProjHasBias(c)) {
      ASSIGN_OR_RETURN(l.o_bias, upload({{p + "self_attn.o_proj.bias", {H}}}));
    }
    ASSIGN_OR_RETURN(l.gate_up, upload({{p + "mlp.gate_proj.weight", {I, H}},
                                        {p + "mlp.up_proj.weight", {I, H}}}));
    ASSIGN_OR_RETURN(l.down, upload({{p + "mlp.down_proj.weight", {H, I}}}));
    layers.push_back(l);
  }
  ASSIGN_OR_RETURN(embed, upload({{"model.embed_tokens.weight", {V, H}}}));
  ASSIGN_OR_RETURN(final_norm, upload({{"model.norm.weight", {H}}}));
  if (c.tie_word_embeddings) {
    lm_head = embed;
  } else {
    ASSIGN_OR_RETURN(lm_head, upload({{"lm_head.weight", {V, H}}}));
  }
  return absl::OkStatus();
}

absl::Status CudaModelRunner::Impl::EnsureActivations(int64_t tokens) {
  if (tokens <= cap_tokens) return absl::OkStatus();
  ClearGraphs();  // they point at the old buffers
  const int64_t T = std::max<int64_t>(NextPow2(static_cast<int>(tokens)), kMaxGraphBatch);
  const int64_t H = cfg.hidden_size, I = cfg.intermediate_size;
  const int64_t qd = cfg.num_attention_heads * cfg.head_dim;
  // Every region 256-byte aligned (the attention kernels load 16-byte chunks).
  const std::vector<int64_t> sizes = {T * H * 2,  T * H * 2,     T * qkv_width() * 2, T * qd * 2,
                                      T * qd * 2, T * H * 2,     T * 2 * I * 2,       T * I * 2};
  std::vector<size_t> offs;
  size_t total = 0;
  for (int64_t s : sizes) {
    offs.push_back(total);
    total += (static_cast<size_t>(s) + 255) / 256 * 256;
  }
  // Free first (device memory may be tight); until the new buffer exists the capacity is 0, so
  // a failed allocation is retried by the next step instead of leaving dangling pointers.
  cap_tokens = 0;
  act_mem.reset();
  ASSIGN_OR_RETURN(act_mem, DeviceAlloc(total));
  char* base = static_cast<char*>(act_mem.get());
  void** slots[] = {&h, &x, &qkv, &qdec, &attn, &o_out, &gu, &act};
  for (int i = 0; i < 8; ++i) *slots[i] = base + offs[i];
  cap_tokens = T;
  return absl::OkStatus();
}

absl::Status CudaModelRunner::Impl::EnsureRows(int64_t r) {
  if (r <= cap_rows) return absl::OkStatus();
  ClearGraphs();
  // Rounded to 64 rows (not a power of two): full-prompt logits at a 128k vocab are large.
  const int64_t R = std::max<int64_t>((r + 63) / 64 * 64, kMaxGraphBatch);
  cap_rows = 0;
  const size_t row_bytes = (static_cast<size_t>(R) * cfg.hidden_size * 2 + 255) / 256 * 256;
  rows_mem.reset();
  ASSIGN_OR_RETURN(rows_mem, DeviceAlloc(row_bytes + static_cast<size_t>(R) * cfg.vocab_size * 4));
  rows = rows_mem.get();
  logits = reinterpret_cast<float*>(static_cast<char*>(rows_mem.get()) + row_bytes);
  cap_rows = R;
  return absl::OkStatus();
}

absl::Status CudaModelRunner::Impl::EnsureMeta(int64_t tokens, int64_t table_elems) {
  if (tokens > cap_meta) {
    ClearGraphs();
    const int64_t C = std::max<int64_t>(NextPow2(static_cast<int>(tokens)), kMaxGraphBatch);
    // int32: ids, pos, qsl (C + 1), lens, lidx; then int64 slots, 8-byte aligned.
    const size_t i32 = (5 * C + 1 + 1) / 2 * 2 * 4;
    const size_t bytes = i32 + C * 8;
    cap_meta = 0;
    meta_dev.reset();
    meta_host.reset();
    ASSIGN_OR_RETURN(meta_dev, DeviceAlloc(bytes));
    void* host = nullptr;
    MUSE_CUDA_RETURN(cudaMallocHost(&host, bytes));
    meta_host.reset(host);
    auto carve = [&](char* base, int32_t** ids, int32_t** pos, int32_t** qsl, int32_t** lens,
                     int32_t** lidx, int64_t** slots) {
      int32_t* p = reinterpret_cast<int32_t*>(base);
      *ids = p;
      *pos = p + C;
      *qsl = p + 2 * C;
      *lens = p + 3 * C + 1;
      *lidx = p + 4 * C + 1;
      *slots = reinterpret_cast<int64_t*>(base + i32);
    };
    carve(static_cast<char*>(meta_dev.get()), &d_ids, &d_pos, &d_qsl, &d_lens, &d_lidx, &d_slots);
    carve(static_cast<char*>(meta_host.get()), &h_ids, &h_pos, &h_qsl, &h_lens, &h_lidx,
          &h_slots);
    cap_meta = C;
  }
  if (table_elems > cap_tables) {
    ClearGraphs();
    const int64_t n = std::max<int64_t>(NextPow2(static_cast<int>(table_elems)), 4096);
    cap_tables = 0;
    tables_dev.reset();
    tables_host.reset();
    ASSIGN_OR_RETURN(tables_dev, DeviceAlloc(n * 4));
    void* host = nullptr;
    MUSE_CUDA_RETURN(cudaMallocHost(&host, n * 4));
    tables_host.reset(host);
    d_tables = static_cast<int32_t*>(tables_dev.get());
    h_tables = static_cast<int32_t*>(tables_host.get());
    cap_tables = n;
  }
  return absl::OkStatus();
}

k::PagedDecodeParams CudaModelRunner::Impl::DecodeParams(const StepShape& s) const {
  k::PagedDecodeParams p{};
  p.num_seqs = s.seqs;
  p.num_heads = static_cast<int>(cfg.num_attention_heads);
  p.num_kv_heads = static_cast<int>(cfg.num_key_value_heads);
  p.head_dim = static_cast<int>(cfg.head_dim);
  p.max_blocks_per_seq = s.table_width;
  p.max_seq_len = s.max_seq_len;
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(cfg.head_dim)));
  p.sliding_window = static_cast<int>(cfg.sliding_window);
  p.dtype = dt;
  return p;
}

absl::Status CudaModelRunner::Impl::EnsureDecodeWorkspace(const StepShape& s) {
  if (!s.decode) return absl::OkStatus();
  const size_t need = k::paged_decode_workspace_size(DecodeParams(s));
  if (need <= dec_ws_bytes) return absl::OkStatus();
  ClearGraphs();
  dec_ws_bytes = 0;
  dec_ws.reset();
  ASSIGN_OR_RETURN(dec_ws, DeviceAlloc(need));
  dec_ws_bytes = need;
  return absl::OkStatus();
}

absl::Status CudaModelRunner::Impl::Upload(const StepShape& s) {
  const size_t i32 = (5 * cap_meta + 1 + 1) / 2 * 2 * 4;
  // One copy covers every int32 array and the slots (they sit in one pinned block).
  MUSE_CUDA_RETURN(cudaMemcpyAsync(meta_dev.get(), meta_host.get(), i32 + s.tokens * 8,
                                   cudaMemcpyHostToDevice, stream));
  MUSE_CUDA_RETURN(cudaMemcpyAsync(d_tables, h_tables,
                                   static_cast<size_t>(s.seqs) * s.table_width * 4,
                                   cudaMemcpyHostToDevice, stream));
  return absl::OkStatus();
}

// y[m, n] = x[m, k] W[n, k]^T; row-major y is column-major y^T = W x^T.
absl::Status CudaModelRunner::Impl::Gemm(const void* xp, int64_t m, int64_t kdim, const void* w,
                                         int64_t n, void* y, cudaDataType_t y_type) {
  if (m == 0) return absl::OkStatus();
  const float alpha = 1.0f, beta = 0.0f;
  MUSE_CUBLAS_RETURN(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n),
                                  static_cast<int>(m), static_cast<int>(kdim), &alpha, w, cuda_dt,
                                  static_cast<int>(kdim), xp, cuda_dt, static_cast<int>(kdim),
                                  &beta, y, y_type, static_cast<int>(n), CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT));
  return absl::OkStatus();
}

absl::Status CudaModelRunner::Impl::RunLayers(const StepShape& s, const Batch* overrides_from) {
  const auto& c = cfg;
  const int T = s.tokens;
  const int64_t H = c.hidden_size, I = c.intermediate_size, D = c.head_dim;
  const int nH = static_cast<int>(c.num_attention_heads), nKV = static_cast<int>(c.num_key_value_heads);
  const int64_t qw = qkv_width();
  const float eps = static_cast<float>(c.rms_norm_eps);
  char* qkv_b = static_cast<char*>(qkv);
  // out = rmsnorm(residual += input) (residual null: out = rmsnorm(input)) over the T rows.
  auto norm = [&](void* out, const void* input, void* residual, const void* weight) {
    k::RmsNormParams p{out, input, residual, weight};
    p.num_tokens = T;
    p.hidden = static_cast<int>(H);
    p.eps = eps;
    p.dtype = dt;
    return k::launch_rms_norm(p, stream);
  };
  // x[rows, cols] += bias, row stride cols.
  auto add_bias = [&](void* xp, const void* bias, int64_t cols) {
    k::AddBiasParams p{xp, bias};
    p.num_rows = T;
    p.cols = static_cast<int>(cols);
    p.dtype = dt;
    return k::launch_add_bias(p, stream);
  };

  k::GatherRowsParams emb{h, embed, d_ids};
  emb.num_rows = T;
  emb.row_elems = static_cast<int>(H);
  emb.dtype = dt;
  MUSE_CUDA_RETURN(k::launch_gather_rows(emb, stream));
  if (overrides_from != nullptr && !overrides_from->embedding_overrides.empty()) {
    // Every override row, converted into one pinned buffer (eager steps only: the buffer is
    // rewritten after the step's final synchronisation), copied on the step's stream.
    int64_t total = 0;
    for (const auto& e : overrides_from->embedding_overrides) total += int64_t{e.num_rows} * H;
    if (total > cap_override) {
      cap_override = 0;
      override_host.reset();
      void* p = nullptr;
      MUSE_CUDA_RETURN(cudaMallocHost(&p, total * 2));
      override_host.reset(p);
      cap_override = total;
    }
    uint16_t* staging = static_cast<uint16_t*>(override_host.get());
    for (const auto& e : overrides_from->embedding_overrides) {
      const int64_t n = int64_t{e.num_rows} * H;
      for (int64_t i = 0; i < n; ++i) {
        staging[i] = dt == k::DType::kFloat16 ? models::FloatToF16(e.data[i])
                                               : models::FloatToBf16(e.data[i]);
      }
      MUSE_CUDA_RETURN(cudaMemcpyAsync(static_cast<char*>(h) + e.token_index * H * elem, staging,
                                       n * 2, cudaMemcpyHostToDevice, stream));
      staging += n;
    }
  }

  for (size_t li = 0; li < layers.size(); ++li) {
    const Layer& l = layers[li];
    MUSE_CUDA_RETURN(norm(x, li == 0 ? h : o_out, li == 0 ? nullptr : h, l.in_norm));
    RETURN_IF_ERROR(Gemm(x, T, H, l.qkv, qw, qkv, cuda_dt));
    if (l.qkv_bias != nullptr) MUSE_CUDA_RETURN(add_bias(qkv, l.qkv_bias, qw));
    k::RopeParams rope{qkv, qkv_b + nH * D * elem, d_pos, static_cast<float*>(cos.get()),
                       static_cast<float*>(sin.get())};
    rope.num_tokens = T;
    rope.num_heads = nH;
    rope.num_kv_heads = nKV;
    rope.head_dim = static_cast<int>(D);
    rope.q_stride = rope.k_stride = qw;
    rope.dtype = dt;
    MUSE_CUDA_RETURN(k::launch_rope(rope, stream));
    k::ReshapeAndCacheParams cache{qkv_b + nH * D * elem, qkv_b + (nH + nKV) * D * elem,
                                   k_cache[li], v_cache[li], d_slots};
    cache.num_tokens = T;
    cache.num_kv_heads = nKV;
    cache.head_dim = static_cast<int>(D);
    cache.key_stride = cache.value_stride = qw;
    cache.dtype = dt;
    MUSE_CUDA_RETURN(k::launch_reshape_and_cache(cache, stream));
    if (s.decode) {
      // The decode kernel reads q densely: [seqs, nH, D] out of the fused qkv rows.
      MUSE_CUDA_RETURN(cudaMemcpy2DAsync(qdec, nH * D * elem, qkv, qw * elem, nH * D * elem, T,
                                         cudaMemcpyDeviceToDevice, stream));
      k::PagedDecodeParams p = DecodeParams(s);
      p.out = attn;
      p.q = qdec;
      p.k_cache = k_cache[li];
      p.v_cache = v_cache[li];
      p.block_tables = d_tables;
      p.seq_lens = d_lens;
      p.workspace = dec_ws.get();
      p.workspace_bytes = dec_ws_bytes;
      MUSE_CUDA_RETURN(k::launch_paged_decode_attention(p, stream));
    } else {
      k::PagedPrefillParams p{};
      p.out = attn;
      p.q = qkv;
      p.k_cache = k_cache[li];
      p.v_cache = v_cache[li];
      p.query_start_loc = d_qsl;
      p.seq_lens = d_lens;
      p.block_tables = d_tables;
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
    RETURN_IF_ERROR(Gemm(attn, T, nH * D, l.o, H, o_out, cuda_dt));
    if (l.o_bias != nullptr) MUSE_CUDA_RETURN(add_bias(o_out, l.o_bias, H));
    MUSE_CUDA_RETURN(norm(x, o_out, h, l.post_norm));
    RETURN_IF_ERROR(Gemm(x, T, H, l.gate_up, 2 * I, gu, cuda_dt));
    k::SiluAndMulParams silu{act, gu};
    silu.num_tokens = T;
    silu.inter = static_cast<int>(I);
    silu.dtype = dt;
    MUSE_CUDA_RETURN(k::launch_silu_and_mul(silu, stream));
    RETURN_IF_ERROR(Gemm(act, T, I, l.down, H, o_out, cuda_dt));
  }
  // No layers: the embeddings go straight to the final norm (no residual to add).
  const bool any = !layers.empty();
  MUSE_CUDA_RETURN(norm(x, any ? o_out : h, any ? h : nullptr, final_norm));
  k::GatherRowsParams pick{rows, x, d_lidx};
  pick.num_rows = s.rows;
  pick.row_elems = static_cast<int>(H);
  pick.dtype = dt;
  MUSE_CUDA_RETURN(k::launch_gather_rows(pick, stream));
  return Gemm(rows, s.rows, H, lm_head, c.vocab_size, logits, CUDA_R_32F);
}

bool CudaDeviceAvailable() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

CudaModelRunner::CudaModelRunner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaModelRunner::~CudaModelRunner() = default;

const models::ModelConfig& CudaModelRunner::config() const { return impl_->cfg; }
int64_t CudaModelRunner::num_kv_blocks() const { return impl_->num_blocks; }
int64_t CudaModelRunner::kv_block_bytes() const { return impl_->block_bytes; }
void CudaModelRunner::set_use_cuda_graphs(bool on) { impl_->use_graphs = on; }
int CudaModelRunner::num_cuda_graphs() const { return static_cast<int>(impl_->graphs.size()); }

absl::StatusOr<std::unique_ptr<CudaModelRunner>> CudaModelRunner::Create(
    const RunnerOptions& o) {
  auto impl = std::make_unique<Impl>();
  if (o.device == "cuda") {
    impl->device = 0;
  } else if (o.device.rfind("cuda:", 0) != 0 ||
             !absl::SimpleAtoi(o.device.substr(5), &impl->device) || impl->device < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("device: '", o.device, "' is not cpu, cuda or cuda:N"));
  }
  if (o.dtype == "bfloat16" || o.dtype == "bf16") {
    impl->dt = k::DType::kBFloat16;
    impl->cuda_dt = CUDA_R_16BF;
  } else if (o.dtype == "float16" || o.dtype == "fp16") {
    impl->dt = k::DType::kFloat16;
    impl->cuda_dt = CUDA_R_16F;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "dtype: '", o.dtype, "' is not supported on cuda (bfloat16 or float16; fp32 runs on cpu)"));
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    return absl::FailedPreconditionError(absl::StrCat("device: '", o.device,
                                                      "': no CUDA device is visible"));
  }
  if (impl->device >= count) {
    return absl::InvalidArgumentError(absl::StrCat("device: '", o.device, "': only ", count,
                                                   " CUDA device(s) visible"));
  }
  MUSE_CUDA_RETURN(cudaSetDevice(impl->device));

  ASSIGN_OR_RETURN(models::llava::DecoderCheckpoint dc,
                   models::llava::OpenDecoderCheckpoint(o.model_dir));
  const std::unique_ptr<models::Checkpoint>& ckpt = dc.checkpoint;
  const std::string& prefix = dc.weight_prefix;
  impl->cfg = ckpt->config();
  const auto& c = impl->cfg;
  const int64_t D = c.head_dim;
  if (D != 64 && D != 80 && D != 96 && D != 128) {
    return absl::InvalidArgumentError(absl::StrCat(
        "head_dim ", D, ": the CUDA attention kernels support 64, 80, 96 and 128"));
  }
  MUSE_CUDA_RETURN(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking));
  MUSE_CUBLAS_RETURN(cublasCreate(&impl->blas));
  MUSE_CUBLAS_RETURN(cublasSetStream(impl->blas, impl->stream));
  // A fixed workspace: cuBLAS must not allocate while a CUDA graph is being captured.
  ASSIGN_OR_RETURN(impl->blas_ws, DeviceAlloc(kCublasWorkspace));
  MUSE_CUBLAS_RETURN(cublasSetWorkspace(impl->blas, impl->blas_ws.get(), kCublasWorkspace));
  RETURN_IF_ERROR(impl->LoadWeights(*ckpt, prefix));

  // KV pool: per layer K then V, [num_blocks, kBlockSize, nKV, D] each.
  const int64_t layer_bytes = 2 * kBlockSize * c.num_key_value_heads * D * impl->elem;
  impl->block_bytes = c.num_hidden_layers * layer_bytes;
  impl->num_blocks = o.num_kv_blocks > 0 ? o.num_kv_blocks : o.kv_cache_bytes / impl->block_bytes;
  if (impl->num_blocks < 1) {
    return absl::InvalidArgumentError(absl::StrCat("kv_cache_bytes: ", o.kv_cache_bytes,
                                                   " is less than one KV block (",
                                                   impl->block_bytes, " bytes)"));
  }
  const size_t cache_bytes = static_cast<size_t>(impl->num_blocks) * kBlockSize *
                             c.num_key_value_heads * D * impl->elem;
  ASSIGN_OR_RETURN(impl->kv, DeviceAlloc(2 * cache_bytes * c.num_hidden_layers));
  MUSE_CUDA_RETURN(cudaMemset(impl->kv.get(), 0, 2 * cache_bytes * c.num_hidden_layers));
  char* kvb = static_cast<char*>(impl->kv.get());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    impl->k_cache.push_back(kvb + (2 * i) * cache_bytes);
    impl->v_cache.push_back(kvb + (2 * i + 1) * cache_bytes);
  }

  // RoPE tables for every position the model accepts.
  impl->max_pos = static_cast<int>(std::max<int64_t>(c.max_position_embeddings, 1));
  std::vector<float> cs, sn;
  k::rope_cos_sin_cache(models::RopeInvFreq(c), impl->max_pos, &cs, &sn);
  ASSIGN_OR_RETURN(impl->cos, DeviceAlloc(cs.size() * 4));
  ASSIGN_OR_RETURN(impl->sin, DeviceAlloc(sn.size() * 4));
  MUSE_CUDA_RETURN(cudaMemcpy(impl->cos.get(), cs.data(), cs.size() * 4, cudaMemcpyHostToDevice));
  MUSE_CUDA_RETURN(cudaMemcpy(impl->sin.get(), sn.data(), sn.size() * 4, cudaMemcpyHostToDevice));
  RETURN_IF_ERROR(impl->EnsureActivations(kMaxGraphBatch));
  RETURN_IF_ERROR(impl->EnsureRows(kMaxGraphBatch));
  // Weights, tables and the KV memset went through the legacy stream; the steps run on a
  // non-blocking one, which does not wait for it.
  MUSE_CUDA_RETURN(cudaDeviceSynchronize());
  RETURN_IF_ERROR(impl->EnsureMeta(kMaxGraphBatch, 0));
  spdlog::info("runner: {} ({} layers, hidden {}), {} on {} (muse CUDA kernels + cuBLAS, CUDA "
               "graphs for decode), {} KV blocks x {} tokens ({} MiB)",
               c.architecture, c.num_hidden_layers, c.hidden_size, o.dtype, o.device,
               impl->num_blocks, kBlockSize, (impl->num_blocks * impl->block_bytes) >> 20);
  return std::unique_ptr<CudaModelRunner>(new CudaModelRunner(std::move(impl)));
}

absl::Status CudaModelRunner::Forward(const Batch& b, Logits* out) {
  Impl& m = *impl_;
  const auto& c = m.cfg;
  RETURN_IF_ERROR(ValidateBatch(b, {c.vocab_size, m.num_blocks, c.hidden_size}));
  for (int t = 0; t < b.num_tokens(); ++t) {
    if (b.positions[t] < 0 || b.positions[t] >= m.max_pos) {
      return absl::InvalidArgumentError(absl::StrCat("batch.positions[", t, "]: ", b.positions[t],
                                                     " is outside [0, max_position_embeddings = ",
                                                     m.max_pos, ")"));
    }
  }
  MUSE_CUDA_RETURN(cudaSetDevice(m.device));
  // A step that failed after queueing its uploads may have left copies from the pinned staging in
  // flight; nothing may rewrite the staging before they land.
  MUSE_CUDA_RETURN(cudaStreamSynchronize(m.stream));
  const int S = b.num_seqs(), T = b.num_tokens(), R = static_cast<int>(b.logits_indices.size());
  bool decode = T == S && b.embedding_overrides.empty();
  int max_len = 0, max_q = 0;
  for (int s = 0; s < S; ++s) {
    max_len = std::max(max_len, b.seq_lens[s]);
    max_q = std::max(max_q, b.query_start_loc[s + 1] - b.query_start_loc[s]);
  }
  bool iota_rows = R == S;
  for (int r = 0; iota_rows && r < R; ++r) iota_rows = b.logits_indices[r] == r;
  const bool graph = m.use_graphs && decode && iota_rows && S <= kMaxGraphBatch;

  StepShape s;
  s.decode = decode;
  s.seqs = graph ? NextPow2(S) : S;
  s.tokens = graph ? s.seqs : T;
  s.rows = graph ? s.seqs : R;
  // Graph replays cover every context up to a power-of-two bucket; eager steps use the batch's.
  s.max_seq_len = graph ? std::min(NextPow2(std::max(max_len, 256)), m.max_pos) : max_len;
  s.max_seq_len = std::max(s.max_seq_len, max_len);
  s.table_width = graph ? (s.max_seq_len + kBlockSize - 1) / kBlockSize : b.max_blocks_per_seq;
  s.max_query_len = max_q;
  RETURN_IF_ERROR(m.EnsureActivations(s.tokens));
  RETURN_IF_ERROR(m.EnsureRows(s.rows));
  // logits_indices may repeat a token, so there can be more rows than tokens.
  RETURN_IF_ERROR(m.EnsureMeta(std::max(s.tokens, s.rows), static_cast<int64_t>(s.seqs) * s.table_width));
  RETURN_IF_ERROR(m.EnsureDecodeWorkspace(s));

  // Host staging; padded graph rows: token 0 at position 0, no KV write, a 1-token context in
  // sequence 0's first block (real memory, output ignored).
  for (int t = 0; t < s.tokens; ++t) {
    const bool real = t < T;
    m.h_ids[t] = real ? b.input_ids[t] : 0;
    m.h_pos[t] = real ? b.positions[t] : 0;
    m.h_slots[t] = real ? b.slot_mapping[t] : -1;
  }
  for (int i = 0; i <= s.seqs; ++i) m.h_qsl[i] = i <= S ? b.query_start_loc[i] : T + (i - S);
  for (int i = 0; i < s.seqs; ++i) m.h_lens[i] = i < S ? b.seq_lens[i] : 1;
  for (int r = 0; r < s.rows; ++r) m.h_lidx[r] = r < R ? b.logits_indices[r] : r;
  const int32_t pad_block = b.block_tables[0];
  for (int i = 0; i < s.seqs; ++i) {
    int32_t* row = m.h_tables + static_cast<int64_t>(i) * s.table_width;
    if (i < S) {
      const int need = (b.seq_lens[i] + kBlockSize - 1) / kBlockSize;
      const int32_t* src = b.block_tables.data() + static_cast<int64_t>(i) * b.max_blocks_per_seq;
      for (int j = 0; j < s.table_width; ++j) row[j] = j < need ? src[j] : src[0];
    } else {
      std::fill(row, row + s.table_width, pad_block);
    }
  }
  RETURN_IF_ERROR(m.Upload(s));

  if (graph) {
    const auto key = std::make_pair(s.seqs, s.max_seq_len);
    auto it = m.graphs.find(key);
    if (it == m.graphs.end()) {
      // One eager run of the shape first: kernels and cuBLAS load and pick their algorithms
      // outside the capture. It writes the same K/V the replay below writes again.
      RETURN_IF_ERROR(m.RunLayers(s, nullptr));
      MUSE_CUDA_RETURN(cudaStreamSynchronize(m.stream));
      cudaGraph_t g = nullptr;
      MUSE_CUDA_RETURN(cudaStreamBeginCapture(m.stream, cudaStreamCaptureModeThreadLocal));
      const absl::Status st = m.RunLayers(s, nullptr);
      const cudaError_t end = cudaStreamEndCapture(m.stream, &g);
      if (!st.ok()) {
        if (g) cudaGraphDestroy(g);
        return st;
      }
      MUSE_CUDA_RETURN(end);
      cudaGraphExec_t exec = nullptr;
      const cudaError_t inst = cudaGraphInstantiate(&exec, g, 0);
      cudaGraphDestroy(g);
      MUSE_CUDA_RETURN(inst);
      it = m.graphs.emplace(key, exec).first;
    }
    MUSE_CUDA_RETURN(cudaGraphLaunch(it->second, m.stream));
  } else {
    RETURN_IF_ERROR(m.RunLayers(s, &b));
  }

  out->num_rows = R;
  out->vocab_size = static_cast<int32_t>(c.vocab_size);
  out->data.resize(static_cast<size_t>(R) * c.vocab_size);
  if (R > 0) {
    const size_t bytes = out->data.size() * sizeof(float);
    if (static_cast<int64_t>(bytes) > m.cap_logits) {
      m.cap_logits = 0;
      m.logits_host.reset();
      void* host = nullptr;
      MUSE_CUDA_RETURN(cudaMallocHost(&host, bytes));
      m.logits_host.reset(host);
      m.cap_logits = static_cast<int64_t>(bytes);
    }
    MUSE_CUDA_RETURN(cudaMemcpyAsync(m.logits_host.get(), m.logits, bytes, cudaMemcpyDeviceToHost,
                                     m.stream));
  }
  MUSE_CUDA_RETURN(cudaStreamSynchronize(m.stream));
  if (R > 0) std::memcpy(out->data.data(), m.logits_host.get(), out->data.size() * sizeof(float));
  return absl::OkStatus();
}

}  // namespace muse::runtime
