#include "src/runtime/cuda/cuda_model_runner.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/sampling.h"
#include "models/batch_validation.h"
#include "models/checkpoint.h"
#include "models/cuda_status.h"
#include "models/half.h"
#include "models/llama/llama_cuda_model.h"
#include "models/llava/llava_config.h"
#include "spdlog/spdlog.h"

namespace muse::runtime {
namespace {

namespace k = ::muse::kernels;

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
// The sampler's workspace holds at most this many bytes (rows beyond it are sampled in chunks).
constexpr size_t kMaxSamplingWorkspace = size_t{256} << 20;
constexpr size_t kCublasWorkspace = 32u << 20;

int NextPow2(int v) {
  int p = 1;
  while (p < v) p <<= 1;
  return p;
}

}  // namespace

struct CudaModelRunner::Impl {
  std::unique_ptr<models::LlamaCudaModel> model;  // weights + RoPE tables + the Llama forward
  k::DType dt = k::DType::kBFloat16;
  int device = 0;
  cudaStream_t stream = nullptr;  // every step's work, non-blocking
  cublasHandle_t blas = nullptr;
  DevPtr blas_ws;  // blas_ws: [kCublasWorkspace] bytes, fixed so GEMMs can be graph-captured

  // KV pool: one allocation kv = [layers][K, V][num_blocks, kKvBlockSize, nKV, D] (runtime dtype).
  DevPtr kv;
  std::vector<void*> k_cache, v_cache;  // per layer: [num_blocks, kKvBlockSize, nKV, D] into kv
  int64_t num_blocks = 0, block_bytes = 0;

  // Activations (sizes from the model; shapes in models::CudaActivations), for cap_tokens
  // tokens; logits rows for cap_rows rows.
  int64_t cap_tokens = 0, cap_rows = 0;
  DevPtr act_mem;   // act_mem: the eight [cap_tokens, *] activations, each 256-byte aligned
  DevPtr rows_mem;  // rows_mem: rows [cap_rows, H] (dtype), then logits [cap_rows, V] fp32
  models::CudaActivations act;  // pointers into act_mem / rows_mem / dec_ws
  // Step metadata on the device (fixed addresses while capacities hold: graphs point at them)
  // and its pinned host staging, one block each laid out as: int32 ids [C], positions [C],
  // query_start_loc [C + 1], seq_lens [C], logits rows [C], then int64 slots [C] 8-byte aligned.
  int64_t cap_meta = 0, cap_tables = 0;
  DevPtr meta_dev;    // meta_dev: the block above, C = cap_meta
  DevPtr tables_dev;  // tables_dev: block tables [seqs, table_width] int32, cap_tables entries
  HostPtr meta_host, tables_host;  // pinned mirrors of meta_dev / tables_dev
  models::CudaStepMeta d_meta;     // pointers into meta_dev / tables_dev
  int32_t *h_ids = nullptr, *h_pos = nullptr, *h_qsl = nullptr, *h_lens = nullptr,
          *h_lidx = nullptr, *h_tables = nullptr;  // host staging of the same arrays
  int64_t* h_slots = nullptr;
  DevPtr dec_ws;  // dec_ws: split-K decode partials, act.decode_workspace_bytes
  int64_t cap_logits = 0;
  HostPtr logits_host;       // logits_host: [rows, V] fp32, pinned
  int64_t cap_override = 0;  // override_host capacity in elements
  HostPtr override_host;     // override_host: image-embedding rows [*, H] in dtype, pinned

  // Device sampling: inputs staged through one pinned block into one device block (both
  // [cap_sampling_in] bytes, rewritten every step, so never captured in a graph), the per-row
  // outputs likewise ([cap_sampling_rows] rows), and the sampler's workspace.
  bool device_sampling = true;
  size_t cap_sampling_in = 0;
  DevPtr sampling_in_dev;
  HostPtr sampling_in_host;
  int64_t cap_sampling_rows = 0;
  DevPtr sampling_out_dev;
  HostPtr sampling_out_host;
  size_t cap_sampling_ws = 0;
  DevPtr sampling_ws;

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

  const models::ModelConfig& cfg() const { return model->config(); }
  size_t elem() const { return k::dtype_size(dt); }
  static size_t MetaInt32Bytes(int64_t c) { return (5 * c + 1 + 1) / 2 * 2 * 4; }

  absl::Status EnsureActivations(int64_t tokens);
  absl::Status EnsureRows(int64_t rows);
  absl::Status EnsureMeta(int64_t tokens, int64_t table_elems);
  absl::Status EnsureDecodeWorkspace(const models::CudaStepShape& s);
  absl::Status Upload(const models::CudaStepShape& s);
  // Converts the batch's image rows into pinned staging (eager steps only: the staging is
  // rewritten only after the step's final synchronisation).
  absl::StatusOr<std::vector<models::CudaEmbeddingRows>> StageEmbeddingRows(const models::Batch& b);
  // Validates the batch (and `sampling` when given, before any device work), then queues the
  // step's forward on the stream (eager or a graph replay): fp32 logits rows [R, V] at act.logits.
  absl::Status Step(const models::Batch& b, const models::SamplingInputs* sampling);
  // Queues the sampler over the R logits rows and the copies of its outputs, synchronises and
  // fills `out`.
  absl::Status Sample(const models::SamplingInputs& in, models::SampledTokens* out);
};

absl::Status CudaModelRunner::Impl::EnsureActivations(int64_t tokens) {
  if (tokens <= cap_tokens) return absl::OkStatus();
  ClearGraphs();  // they point at the old buffers
  const int64_t T = std::max<int64_t>(NextPow2(static_cast<int>(tokens)), kMaxGraphBatch);
  const auto sizes = model->ActivationBytes(T);
  // Every region 256-byte aligned (the attention kernels load 16-byte chunks).
  std::vector<size_t> offs;
  size_t total = 0;
  for (size_t s : sizes) {
    offs.push_back(total);
    total += (s + 255) / 256 * 256;
  }
  // Free first (device memory may be tight); until the new buffer exists the capacity is 0, so
  // a failed allocation is retried by the next step instead of leaving dangling pointers.
  cap_tokens = 0;
  act_mem.reset();
  ASSIGN_OR_RETURN(act_mem, DeviceAlloc(total));
  char* base = static_cast<char*>(act_mem.get());
  void** slots[] = {&act.h, &act.x, &act.qkv, &act.qdec, &act.attn, &act.o_out, &act.gu, &act.act};
  static_assert(std::size(slots) == models::CudaActivations::kCount);
  for (size_t i = 0; i < offs.size(); ++i) *slots[i] = base + offs[i];
  cap_tokens = T;
  return absl::OkStatus();
}

absl::Status CudaModelRunner::Impl::EnsureRows(int64_t r) {
  if (r <= cap_rows) return absl::OkStatus();
  ClearGraphs();
  // Rounded to 64 rows (not a power of two): full-prompt logits at a 128k vocab are large.
  const int64_t R = std::max<int64_t>((r + 63) / 64 * 64, kMaxGraphBatch);
  cap_rows = 0;
  const size_t row_bytes = (model->RowBytes(R) + 255) / 256 * 256;
  rows_mem.reset();
  ASSIGN_OR_RETURN(rows_mem,
                   DeviceAlloc(row_bytes + static_cast<size_t>(R) * cfg().vocab_size * 4));
  act.rows = rows_mem.get();
  act.logits = reinterpret_cast<float*>(static_cast<char*>(rows_mem.get()) + row_bytes);
  cap_rows = R;
  return absl::OkStatus();
}

absl::Status CudaModelRunner::Impl::EnsureMeta(int64_t tokens, int64_t table_elems) {
  if (tokens > cap_meta) {
    ClearGraphs();
    const int64_t C = std::max<int64_t>(NextPow2(static_cast<int>(tokens)), kMaxGraphBatch);
    const size_t i32 = MetaInt32Bytes(C);
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
    int32_t *ids, *pos, *qsl, *lens, *lidx;
    int64_t* slots;
    carve(static_cast<char*>(meta_dev.get()), &ids, &pos, &qsl, &lens, &lidx, &slots);
    d_meta.ids = ids;
    d_meta.positions = pos;
    d_meta.query_start_loc = qsl;
    d_meta.seq_lens = lens;
    d_meta.logits_rows = lidx;
    d_meta.slots = slots;
    carve(static_cast<char*>(meta_host.get()), &h_ids, &h_pos, &h_qsl, &h_lens, &h_lidx, &h_slots);
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
    d_meta.block_tables = static_cast<int32_t*>(tables_dev.get());
    h_tables = static_cast<int32_t*>(tables_host.get());
    cap_tables = n;
  }
  return absl::OkStatus();
}

absl::Status CudaModelRunner::Impl::EnsureDecodeWorkspace(const models::CudaStepShape& s) {
  const size_t need = model->DecodeWorkspaceBytes(s);
  if (need <= act.decode_workspace_bytes) return absl::OkStatus();
  ClearGraphs();
  act.decode_workspace_bytes = 0;
  act.decode_workspace = nullptr;
  dec_ws.reset();
  ASSIGN_OR_RETURN(dec_ws, DeviceAlloc(need));
  act.decode_workspace = dec_ws.get();
  act.decode_workspace_bytes = need;
  return absl::OkStatus();
}

absl::Status CudaModelRunner::Impl::Upload(const models::CudaStepShape& s) {
  // One copy covers every int32 array and the slots (they sit in one pinned block).
  MUSE_CUDA_RETURN(cudaMemcpyAsync(meta_dev.get(), meta_host.get(),
                                   MetaInt32Bytes(cap_meta) + size_t{8} * s.tokens,
                                   cudaMemcpyHostToDevice, stream));
  MUSE_CUDA_RETURN(cudaMemcpyAsync(tables_dev.get(), h_tables,
                                   static_cast<size_t>(s.seqs) * s.table_width * 4,
                                   cudaMemcpyHostToDevice, stream));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<models::CudaEmbeddingRows>> CudaModelRunner::Impl::StageEmbeddingRows(
    const models::Batch& b) {
  std::vector<models::CudaEmbeddingRows> out;
  if (b.embedding_overrides.empty()) return out;
  const int64_t H = cfg().hidden_size;
  int64_t total = 0;
  for (const auto& e : b.embedding_overrides) total += int64_t{e.num_rows} * H;
  if (total > cap_override) {
    cap_override = 0;
    override_host.reset();
    void* p = nullptr;
    MUSE_CUDA_RETURN(cudaMallocHost(&p, total * elem()));
    override_host.reset(p);
    cap_override = total;
  }
  uint16_t* staging = static_cast<uint16_t*>(override_host.get());
  for (const auto& e : b.embedding_overrides) {
    const int64_t n = int64_t{e.num_rows} * H;
    for (int64_t i = 0; i < n; ++i) {
      staging[i] =
          dt == k::DType::kFloat16 ? models::FloatToF16(e.data[i]) : models::FloatToBf16(e.data[i]);
    }
    out.push_back({e.token_index, e.num_rows, staging});
    staging += n;
  }
  return out;
}

bool CudaDeviceAvailable() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

CudaModelRunner::CudaModelRunner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaModelRunner::~CudaModelRunner() = default;

const models::ModelConfig& CudaModelRunner::config() const { return impl_->cfg(); }
int64_t CudaModelRunner::num_kv_blocks() const { return impl_->num_blocks; }
int64_t CudaModelRunner::kv_block_bytes() const { return impl_->block_bytes; }
bool CudaModelRunner::SamplesOnDevice() const { return impl_->device_sampling; }
void CudaModelRunner::set_use_cuda_graphs(bool on) { impl_->use_graphs = on; }
int CudaModelRunner::num_cuda_graphs() const { return static_cast<int>(impl_->graphs.size()); }

absl::StatusOr<std::unique_ptr<CudaModelRunner>> CudaModelRunner::Create(const RunnerOptions& o) {
  auto impl = std::make_unique<Impl>();
  impl->device_sampling = o.device_sampling;
  if (o.device == "cuda") {
    impl->device = 0;
  } else if (o.device.rfind("cuda:", 0) != 0 ||
             !absl::SimpleAtoi(o.device.substr(5), &impl->device) || impl->device < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("device: '", o.device, "' is not cpu, cuda or cuda:N"));
  }
  if (o.dtype == "bfloat16" || o.dtype == "bf16") {
    impl->dt = k::DType::kBFloat16;
  } else if (o.dtype == "float16" || o.dtype == "fp16") {
    impl->dt = k::DType::kFloat16;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "dtype: '", o.dtype, "' is not supported on cuda (bfloat16 or float16; fp32 runs on cpu)"));
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("device: '", o.device, "': no CUDA device is visible"));
  }
  if (impl->device >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("device: '", o.device, "': only ", count, " CUDA device(s) visible"));
  }
  MUSE_CUDA_RETURN(cudaSetDevice(impl->device));

  ASSIGN_OR_RETURN(models::llava::DecoderCheckpoint dc,
                   models::llava::OpenDecoderCheckpoint(o.model_dir));
  const models::ModelConfig& c = dc.checkpoint->config();
  const int64_t D = c.head_dim;
  if (D != 16 && D != 32 && D != 64 && D != 80 && D != 96 && D != 128) {
    return absl::InvalidArgumentError(absl::StrCat(
        "head_dim ", D, ": the CUDA attention kernels support 16, 32, 64, 80, 96 and 128"));
  }
  MUSE_CUDA_RETURN(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking));
  MUSE_CUBLAS_RETURN(cublasCreate(&impl->blas));
  MUSE_CUBLAS_RETURN(cublasSetStream(impl->blas, impl->stream));
  // A fixed workspace: cuBLAS must not allocate while a CUDA graph is being captured.
  ASSIGN_OR_RETURN(impl->blas_ws, DeviceAlloc(kCublasWorkspace));
  MUSE_CUBLAS_RETURN(cublasSetWorkspace(impl->blas, impl->blas_ws.get(), kCublasWorkspace));
  ASSIGN_OR_RETURN(impl->model,
                   models::LlamaCudaModel::Load(*dc.checkpoint, dc.weight_prefix, impl->dt));

  // KV pool: per layer K then V, [num_blocks, kKvBlockSize, nKV, D] each.
  const int64_t layer_bytes = int64_t{2} * kernels::kKvBlockSize * c.num_key_value_heads * D *
                              static_cast<int64_t>(impl->elem());
  impl->block_bytes = c.num_hidden_layers * layer_bytes;
  impl->num_blocks = o.num_kv_blocks > 0 ? o.num_kv_blocks : o.kv_cache_bytes / impl->block_bytes;
  if (impl->num_blocks < 1) {
    return absl::InvalidArgumentError(absl::StrCat("kv_cache_bytes: ", o.kv_cache_bytes,
                                                   " is less than one KV block (",
                                                   impl->block_bytes, " bytes)"));
  }
  const size_t cache_bytes = static_cast<size_t>(impl->num_blocks) * kernels::kKvBlockSize *
                             c.num_key_value_heads * D * impl->elem();
  ASSIGN_OR_RETURN(impl->kv, DeviceAlloc(2 * cache_bytes * c.num_hidden_layers));
  MUSE_CUDA_RETURN(cudaMemset(impl->kv.get(), 0, 2 * cache_bytes * c.num_hidden_layers));
  char* kvb = static_cast<char*>(impl->kv.get());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    impl->k_cache.push_back(kvb + (2 * i) * cache_bytes);
    impl->v_cache.push_back(kvb + (2 * i + 1) * cache_bytes);
  }

  RETURN_IF_ERROR(impl->EnsureActivations(kMaxGraphBatch));
  RETURN_IF_ERROR(impl->EnsureRows(kMaxGraphBatch));
  // Weights, tables and the KV memset went through the legacy stream; the steps run on a
  // non-blocking one, which does not wait for it.
  MUSE_CUDA_RETURN(cudaDeviceSynchronize());
  RETURN_IF_ERROR(impl->EnsureMeta(kMaxGraphBatch, 0));
  spdlog::info(
      "runner: {} ({} layers, hidden {}), {} on {} (muse CUDA kernels + cuBLAS, CUDA "
      "graphs for decode, sampling on the {}), {} KV blocks x {} tokens ({} MiB)",
      c.architecture, c.num_hidden_layers, c.hidden_size, o.dtype, o.device,
      o.device_sampling ? "device" : "host", impl->num_blocks, kernels::kKvBlockSize,
      (impl->num_blocks * impl->block_bytes) >> 20);
  return std::unique_ptr<CudaModelRunner>(new CudaModelRunner(std::move(impl)));
}

absl::Status CudaModelRunner::Impl::Step(const models::Batch& b,
                                         const models::SamplingInputs* sampling) {
  Impl& m = *this;
  const auto& c = m.cfg();
  RETURN_IF_ERROR(models::ValidateBatch(b, {c.vocab_size, m.num_blocks, c.hidden_size}));
  const int max_pos = m.model->max_positions();
  for (int t = 0; t < b.num_tokens(); ++t) {
    if (b.positions[t] < 0 || b.positions[t] >= max_pos) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch.positions[", t, "]: ", b.positions[t],
                       " is outside [0, max_position_embeddings = ", max_pos, ")"));
    }
  }
  if (sampling != nullptr) {
    RETURN_IF_ERROR(models::ValidateSamplingInputs(
        *sampling, static_cast<int64_t>(b.logits_indices.size()), c.vocab_size));
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
  constexpr int kBlock = kernels::kKvBlockSize;

  models::CudaStepShape s;
  s.decode = decode;
  s.seqs = graph ? NextPow2(S) : S;
  s.tokens = graph ? s.seqs : T;
  s.rows = graph ? s.seqs : R;
  // Graph replays cover every context up to a power-of-two bucket; eager steps use the batch's.
  s.max_seq_len = graph ? std::min(NextPow2(std::max(max_len, 256)), max_pos) : max_len;
  s.max_seq_len = std::max(s.max_seq_len, max_len);
  s.table_width = graph ? (s.max_seq_len + kBlock - 1) / kBlock : b.max_blocks_per_seq;
  s.max_query_len = max_q;
  RETURN_IF_ERROR(m.EnsureActivations(s.tokens));
  RETURN_IF_ERROR(m.EnsureRows(s.rows));
  // logits_indices may repeat a token, so there can be more rows than tokens.
  RETURN_IF_ERROR(
      m.EnsureMeta(std::max(s.tokens, s.rows), static_cast<int64_t>(s.seqs) * s.table_width));
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
      const int need = (b.seq_lens[i] + kBlock - 1) / kBlock;
      const int32_t* src = b.block_tables.data() + static_cast<int64_t>(i) * b.max_blocks_per_seq;
      for (int j = 0; j < s.table_width; ++j) row[j] = j < need ? src[j] : src[0];
    } else {
      std::fill(row, row + s.table_width, pad_block);
    }
  }
  RETURN_IF_ERROR(m.Upload(s));

  auto run = [&](const std::vector<models::CudaEmbeddingRows>& rows) {
    return m.model->Forward(s, m.d_meta, m.act, m.k_cache, m.v_cache, rows, m.blas, m.stream);
  };
  if (graph) {
    const auto key = std::make_pair(s.seqs, s.max_seq_len);
    auto it = m.graphs.find(key);
    if (it == m.graphs.end()) {
      // One eager run of the shape first: kernels and cuBLAS load and pick their algorithms
      // outside the capture. It writes the same K/V the replay below writes again.
      RETURN_IF_ERROR(run({}));
      MUSE_CUDA_RETURN(cudaStreamSynchronize(m.stream));
      cudaGraph_t g = nullptr;
      MUSE_CUDA_RETURN(cudaStreamBeginCapture(m.stream, cudaStreamCaptureModeThreadLocal));
      absl::Status st = run({});
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
    ASSIGN_OR_RETURN(std::vector<models::CudaEmbeddingRows> rows, m.StageEmbeddingRows(b));
    RETURN_IF_ERROR(run(rows));
  }
  return absl::OkStatus();
}

absl::Status CudaModelRunner::Forward(const models::Batch& b, models::Logits* out) {
  Impl& m = *impl_;
  const auto& c = m.cfg();
  RETURN_IF_ERROR(m.Step(b, nullptr));
  const int R = static_cast<int>(b.logits_indices.size());
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
    MUSE_CUDA_RETURN(cudaMemcpyAsync(m.logits_host.get(), m.act.logits, bytes,
                                     cudaMemcpyDeviceToHost, m.stream));
  }
  MUSE_CUDA_RETURN(cudaStreamSynchronize(m.stream));
  if (R > 0) std::memcpy(out->data.data(), m.logits_host.get(), out->data.size() * sizeof(float));
  return absl::OkStatus();
}

absl::Status CudaModelRunner::Impl::Sample(const models::SamplingInputs& in,
                                           models::SampledTokens* out) {
  // The forward pass is queued: the engine's structured-output masks are computed meanwhile.
  if (in.await_bitmask) in.await_bitmask();
  const int R = in.num_rows();
  const int V = static_cast<int>(cfg().vocab_size);
  out->num_rows = R;
  out->ids.assign(R, -1);
  out->logprobs.assign(R, 0.0f);
  constexpr int kTop = k::kSamplingMaxTopLogprobs;
  static_assert(kTop == models::SampledTokens::kMaxTopLogprobs);
  out->top_ids.assign(static_cast<size_t>(R) * kTop, -1);
  out->top_logprobs.assign(static_cast<size_t>(R) * kTop, -std::numeric_limits<float>::infinity());
  if (R == 0) {
    MUSE_CUDA_RETURN(cudaStreamSynchronize(stream));
    return absl::OkStatus();
  }

  // Inputs: one block of 16-byte aligned regions, staged in pinned memory, one H2D copy.
  size_t total = 0;
  auto region = [&](size_t bytes) {
    const size_t at = total;
    total += (bytes + 15) / 16 * 16;
    return at;
  };
  auto bytes_of = [](const auto& v) { return v.size() * sizeof(v[0]); };
  const size_t o_params = region(sizeof(k::SamplingRowParams) * R);
  const size_t o_mo = region(bytes_of(in.masked_offsets)), o_mi = region(bytes_of(in.masked_ids));
  const size_t o_bo = region(bytes_of(in.bias_offsets)), o_bi = region(bytes_of(in.bias_ids));
  const size_t o_bv = region(bytes_of(in.bias_values));
  const size_t o_po = region(bytes_of(in.penalty_offsets)), o_pi = region(bytes_of(in.penalty_ids));
  const size_t o_pc = region(bytes_of(in.penalty_counts));
  const size_t o_mask = region(bytes_of(in.allowed_bitmask));
  if (total > cap_sampling_in) {
    const size_t cap = std::max<size_t>(total * 2, 4096);
    cap_sampling_in = 0;
    sampling_in_dev.reset();
    sampling_in_host.reset();
    ASSIGN_OR_RETURN(sampling_in_dev, DeviceAlloc(cap));
    void* host = nullptr;
    MUSE_CUDA_RETURN(cudaMallocHost(&host, cap));
    sampling_in_host.reset(host);
    cap_sampling_in = cap;
  }
  char* h = static_cast<char*>(sampling_in_host.get());
  auto* hp = reinterpret_cast<k::SamplingRowParams*>(h + o_params);
  for (int r = 0; r < R; ++r) {
    const models::SamplingRowParams& p = in.rows[r];
    k::SamplingRowParams& d = hp[r];
    d.temperature = p.temperature;
    d.top_k = p.top_k;
    d.top_p = p.top_p;
    d.min_p = p.min_p;
    d.repetition_penalty = p.repetition_penalty;
    d.presence_penalty = p.presence_penalty;
    d.frequency_penalty = p.frequency_penalty;
    d.logprobs = p.logprobs;
    d.seed = p.seed;
    d.sample_index = p.sample_index;
    d.generated = p.generated;
  }
  auto put = [&](size_t at, const auto& v) {
    if (!v.empty()) std::memcpy(h + at, v.data(), bytes_of(v));
  };
  put(o_mo, in.masked_offsets);
  put(o_mi, in.masked_ids);
  put(o_bo, in.bias_offsets);
  put(o_bi, in.bias_ids);
  put(o_bv, in.bias_values);
  put(o_po, in.penalty_offsets);
  put(o_pi, in.penalty_ids);
  put(o_pc, in.penalty_counts);
  put(o_mask, in.allowed_bitmask);
  MUSE_CUDA_RETURN(
      cudaMemcpyAsync(sampling_in_dev.get(), h, total, cudaMemcpyHostToDevice, stream));

  // Outputs: ids [R], logprobs [R], then (when a row asks for alternatives) top ids and logprobs
  // [R, kTop]; one D2H copy of what was written.
  int max_logprobs = -1;
  for (const auto& p : in.rows) max_logprobs = std::max(max_logprobs, p.logprobs);
  const bool top = max_logprobs > 0;
  const size_t out_bytes = size_t{8} * R + (top ? size_t{8} * kTop * R : 0);
  if (R > cap_sampling_rows) {
    const int64_t cap = std::max<int64_t>(NextPow2(R), kMaxGraphBatch);
    const size_t bytes = static_cast<size_t>(cap) * (8 + 8 * kTop);
    cap_sampling_rows = 0;
    sampling_out_dev.reset();
    sampling_out_host.reset();
    ASSIGN_OR_RETURN(sampling_out_dev, DeviceAlloc(bytes));
    void* host = nullptr;
    MUSE_CUDA_RETURN(cudaMallocHost(&host, bytes));
    sampling_out_host.reset(host);
    cap_sampling_rows = cap;
  }
  const size_t row_ws = k::sampling_workspace_bytes(1, V);
  const int ws_rows = static_cast<int>(
      std::clamp<size_t>(kMaxSamplingWorkspace / row_ws, 1, static_cast<size_t>(R)));
  const size_t ws_bytes = k::sampling_workspace_bytes(ws_rows, V);
  if (ws_bytes > cap_sampling_ws) {
    cap_sampling_ws = 0;
    sampling_ws.reset();
    ASSIGN_OR_RETURN(sampling_ws, DeviceAlloc(ws_bytes));
    cap_sampling_ws = ws_bytes;
  }

  char* d = static_cast<char*>(sampling_in_dev.get());
  auto dev_i32 = [&](size_t at, const std::vector<int32_t>& v) {
    return v.empty() ? nullptr : reinterpret_cast<const int32_t*>(d + at);
  };
  char* o = static_cast<char*>(sampling_out_dev.get());
  k::SamplingArgs a;
  a.logits = act.logits;
  a.logits_stride = V;
  a.num_rows = R;
  a.vocab = V;
  a.params = reinterpret_cast<const k::SamplingRowParams*>(d + o_params);
  if (!in.masked_offsets.empty()) {
    a.masked_offsets = dev_i32(o_mo, in.masked_offsets);
    a.masked_ids = reinterpret_cast<const int32_t*>(d + o_mi);  // valid even when empty
  }
  if (!in.bias_offsets.empty()) {
    a.bias_offsets = dev_i32(o_bo, in.bias_offsets);
    a.bias_ids = reinterpret_cast<const int32_t*>(d + o_bi);
    a.bias_values = reinterpret_cast<const float*>(d + o_bv);
  }
  if (!in.penalty_offsets.empty()) {
    a.penalty_offsets = dev_i32(o_po, in.penalty_offsets);
    a.penalty_ids = reinterpret_cast<const int32_t*>(d + o_pi);
    a.penalty_counts = reinterpret_cast<const int32_t*>(d + o_pc);
  }
  if (!in.allowed_bitmask.empty())
    a.allowed_bitmask = reinterpret_cast<const uint32_t*>(d + o_mask);
  a.out_ids = reinterpret_cast<int32_t*>(o);
  a.out_logprobs = reinterpret_cast<float*>(o + size_t{4} * R);
  if (top) {
    a.out_top_ids = reinterpret_cast<int32_t*>(o + size_t{8} * R);
    a.out_top_logprobs = reinterpret_cast<float*>(o + size_t{8} * R + size_t{4} * kTop * R);
  }
  a.workspace = sampling_ws.get();
  a.workspace_bytes = cap_sampling_ws;
  MUSE_CUDA_RETURN(k::launch_sampling(a, stream));
  MUSE_CUDA_RETURN(
      cudaMemcpyAsync(sampling_out_host.get(), o, out_bytes, cudaMemcpyDeviceToHost, stream));
  MUSE_CUDA_RETURN(cudaStreamSynchronize(stream));
  const char* ho = static_cast<const char*>(sampling_out_host.get());
  std::memcpy(out->ids.data(), ho, size_t{4} * R);
  std::memcpy(out->logprobs.data(), ho + size_t{4} * R, size_t{4} * R);
  if (top) {
    std::memcpy(out->top_ids.data(), ho + size_t{8} * R, size_t{4} * kTop * R);
    std::memcpy(out->top_logprobs.data(), ho + size_t{8} * R + size_t{4} * kTop * R,
                size_t{4} * kTop * R);
  }
  return absl::OkStatus();
}

absl::Status CudaModelRunner::ForwardAndSample(const models::Batch& b,
                                               const models::SamplingInputs& sampling,
                                               models::SampledTokens* out) {
  if (!impl_->device_sampling) {
    return absl::FailedPreconditionError(
        "device_sampling is off for this runner: sample the logits of Forward on the host");
  }
  RETURN_IF_ERROR(impl_->Step(b, &sampling));
  return impl_->Sample(sampling, out);
}

}  // namespace muse::runtime
