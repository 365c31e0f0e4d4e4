#include "src/runtime/cpu_model_runner.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/packed_gemm.h"
#include "kernels/cpu/thread_pool.h"
#include "models/aten_dtype.h"
#include "models/batch_codec.h"
#include "models/batch_validation.h"
#include "models/cpu_threads.h"
#include "models/llava/llava_config.h"
#include "spdlog/spdlog.h"
#include "src/collective/communicator.h"

namespace muse::runtime {
namespace {

at::Tensor LongTensor(const std::vector<int64_t>& v, at::Device dev) {
  return at::tensor(v, at::TensorOptions().dtype(at::kLong)).to(dev);
}

}  // namespace

absl::StatusOr<std::unique_ptr<CpuModelRunner>> CpuModelRunner::Create(const RunnerOptions& o) {
  ASSIGN_OR_RETURN(at::ScalarType dtype, models::ParseAtenDtype(o.dtype));
  at::Device device = at::kCPU;
  if (o.device != "cpu") {
    return absl::InvalidArgumentError(
        absl::StrCat("device: '", o.device, "' is not available in this build (cpu only)"));
  }
  const models::CpuThreads threads = models::ConfigureCpuThreads(o.num_threads);
  // A LLaVA directory holds the decoder under "language_model." with its config under
  // text_config; the runner serves that decoder (the vision tower runs in the image encoder).
  ASSIGN_OR_RETURN(models::llava::DecoderCheckpoint dc,
                   models::llava::OpenDecoderCheckpoint(o.model_dir));
  const std::unique_ptr<models::Checkpoint>& ckpt = dc.checkpoint;
  const std::string& prefix = dc.weight_prefix;
  auto r = std::unique_ptr<CpuModelRunner>(new CpuModelRunner());
  r->config_ = ckpt->config();
  const bool cpu_kernels =
      o.cpu_kernels && dtype == at::kFloat && kernels::cpu::PackedGemmSupported();
  collective::Communicator* tp =
      o.tensor_parallel != nullptr && o.tensor_parallel->size() > 1 ? o.tensor_parallel : nullptr;
  if (tp != nullptr && !cpu_kernels) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor_parallel: on CPU it runs on muse's kernels only (dtype float32, a CPU with AVX2 + "
        "FMA, cpu_kernels on); got dtype ",
        o.dtype));
  }
  if (cpu_kernels) {
    const int n = o.num_threads > 0 ? o.num_threads : kernels::cpu::AvailableCpus();
    ASSIGN_OR_RETURN(r->cpu_model_, models::LlamaCpuModel::Load(*ckpt, prefix, n, tp));
    r->tp_ = tp;
  } else {
    ASSIGN_OR_RETURN(r->model_, models::LlamaAtenModel::Load(*ckpt, dtype, device, prefix));
  }
  const auto& c = r->config_;
  const int64_t elem = at::elementSize(dtype);
  // A tensor-parallel rank caches only its KV heads (the same number on every rank, so every rank
  // sizes the same pool from the same options).
  const int64_t kv_heads =
      r->cpu_model_ ? r->cpu_model_->num_local_kv_heads() : c.num_key_value_heads;
  r->block_bytes_ = c.num_hidden_layers * 2 * kernels::kKvBlockSize * kv_heads * c.head_dim * elem;
  r->num_blocks_ = o.num_kv_blocks > 0 ? o.num_kv_blocks : o.kv_cache_bytes / r->block_bytes_;
  if (r->num_blocks_ < 1) {
    return absl::InvalidArgumentError(absl::StrCat("kv_cache_bytes: ", o.kv_cache_bytes,
                                                   " is less than one KV block (", r->block_bytes_,
                                                   " bytes)"));
  }
  const auto opts = at::TensorOptions().dtype(dtype).device(device);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    r->k_caches_.push_back(
        at::zeros({r->num_blocks_, kernels::kKvBlockSize, kv_heads, c.head_dim}, opts));
    r->v_caches_.push_back(
        at::zeros({r->num_blocks_, kernels::kKvBlockSize, kv_heads, c.head_dim}, opts));
    r->k_ptrs_.push_back(static_cast<float*>(r->k_caches_.back().data_ptr()));
    r->v_ptrs_.push_back(static_cast<float*>(r->v_caches_.back().data_ptr()));
  }
  if (r->cpu_model_) {
    spdlog::info(
        "runner: {} ({} layers, hidden {}), {} on {} with muse CPU kernels ({} threads), "
        "{} KV blocks x {} tokens ({} MiB){}",
        c.architecture, c.num_hidden_layers, c.hidden_size, o.dtype, o.device,
        r->cpu_model_->num_threads(), r->num_blocks_, kernels::kKvBlockSize,
        (r->num_blocks_ * r->block_bytes_) >> 20,
        tp != nullptr ? absl::StrCat(", tensor-parallel rank ", tp->rank(), " of ", tp->size())
                      : std::string());
  } else {
    spdlog::info(
        "runner: {} ({} layers, hidden {}), {} on {} with ATen (threads: {} BLAS, {} "
        "ATen), {} KV blocks x {} tokens ({} MiB)",
        c.architecture, c.num_hidden_layers, c.hidden_size, o.dtype, o.device, threads.blas,
        threads.aten, r->num_blocks_, kernels::kKvBlockSize,
        (r->num_blocks_ * r->block_bytes_) >> 20);
  }
  return r;
}

models::AttentionMeta CpuModelRunner::BuildMeta(const models::Batch& b) const {
  const auto& c = config_;
  const at::Device dev = model_->device();
  const auto mask_opts = at::TensorOptions().dtype(model_->dtype());
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const int64_t window = c.sliding_window;
  models::AttentionMeta m;

  std::vector<int64_t> wt, ws;
  for (int64_t t = 0; t < b.num_tokens(); ++t) {
    if (b.slot_mapping[t] >= 0) {
      wt.push_back(t);
      ws.push_back(b.slot_mapping[t]);
    }
  }
  m.write_token_idx = LongTensor(wt, dev);
  m.write_slots = LongTensor(ws, dev);

  // Is context index `key` visible from the query at context index `query`?
  auto visible = [&](int64_t query, int64_t key) {
    return key <= query && (window <= 0 || key > query - window);
  };

  std::vector<int64_t> dec_tok, dec_seq;
  int64_t nb_max = 0;
  for (int s = 0; s < b.num_seqs(); ++s) {
    const int64_t begin = b.query_start_loc[s], q = b.query_start_loc[s + 1] - begin;
    const int64_t len = b.seq_lens[s];
    const int64_t nb = (len + kernels::kKvBlockSize - 1) / kernels::kKvBlockSize;
    const int32_t* table = b.block_tables.data() + static_cast<int64_t>(s) * b.max_blocks_per_seq;
    if (q == 1) {
      dec_tok.push_back(begin);
      dec_seq.push_back(s);
      nb_max = std::max(nb_max, nb);
      continue;
    }
    models::AttentionMeta::Chunk ch;
    ch.token_begin = begin;
    ch.q_len = q;
    ch.seq_len = len;
    ch.blocks = LongTensor(std::vector<int64_t>(table, table + nb), dev);
    at::Tensor mask = at::empty({q, len}, at::kFloat);
    float* mp = mask.data_ptr<float>();
    for (int64_t j = 0; j < q; ++j) {
      const int64_t qi = len - q + j;
      for (int64_t k = 0; k < len; ++k) mp[j * len + k] = visible(qi, k) ? 0.f : neg_inf;
    }
    ch.mask = mask.to(mask_opts).to(dev);
    m.chunks.push_back(std::move(ch));
  }
  if (!dec_tok.empty()) {
    const int64_t B = dec_tok.size(), L = nb_max * kernels::kKvBlockSize;
    std::vector<int64_t> blocks(B * nb_max, 0);
    at::Tensor mask = at::full({B, 1, 1, L}, neg_inf, at::kFloat);
    float* mp = mask.data_ptr<float>();
    for (int64_t i = 0; i < B; ++i) {
      const int s = dec_seq[i];
      const int64_t len = b.seq_lens[s];
      const int64_t nb = (len + kernels::kKvBlockSize - 1) / kernels::kKvBlockSize;
      const int32_t* table = b.block_tables.data() + static_cast<int64_t>(s) * b.max_blocks_per_seq;
      for (int64_t j = 0; j < nb; ++j) blocks[i * nb_max + j] = table[j];
      for (int64_t k = 0; k < len; ++k) mp[i * L + k] = visible(len - 1, k) ? 0.f : neg_inf;
    }
    m.dec_token_idx = LongTensor(dec_tok, dev);
    m.dec_blocks = LongTensor(blocks, dev).view({B, nb_max});
    m.dec_mask = mask.to(mask_opts).to(dev);
  }
  return m;
}

absl::Status CpuModelRunner::Forward(const models::Batch& b, models::Logits* out) {
  const auto& c = config_;
  RETURN_IF_ERROR(ValidateBatch(b, {c.vocab_size, num_blocks_, c.hidden_size}));
  out->num_rows = static_cast<int32_t>(b.logits_indices.size());
  out->vocab_size = static_cast<int32_t>(c.vocab_size);
  out->data.resize(static_cast<size_t>(out->num_rows) * c.vocab_size);
  if (tp_ != nullptr) {
    if (tp_->rank() != 0) {
      return absl::FailedPreconditionError("tensor-parallel ranks > 0 serve rank 0's batches");
    }
    std::string message = models::EncodeBatch(b, c.hidden_size);
    RETURN_IF_ERROR(tp_->BroadcastMessage(&message, 0));
  }
  if (cpu_model_) {
    return cpu_model_->Forward(b, k_ptrs_, v_ptrs_, out->data.data());
  }
  const at::Device dev = model_->device();
  at::NoGradGuard no_grad;
  at::Tensor ids = at::tensor(b.input_ids, at::kInt).to(at::kLong).to(dev);
  at::Tensor pos = at::tensor(b.positions, at::kInt).to(at::kLong).to(dev);
  at::Tensor h = model_->Embed(ids);
  for (const auto& e : b.embedding_overrides) {
    at::Tensor rows =
        at::from_blob(const_cast<float*>(e.data), {e.num_rows, c.hidden_size}, at::kFloat);
    h.narrow(0, e.token_index, e.num_rows).copy_(rows);
  }
  models::AttentionMeta meta = BuildMeta(b);
  h = model_->Forward(h, pos, meta, k_caches_, v_caches_);
  if (out->num_rows == 0) return absl::OkStatus();
  at::Tensor rows = h.index_select(0, at::tensor(b.logits_indices, at::kInt).to(at::kLong).to(dev));
  at::Tensor logits = model_->Logits(rows).contiguous().to(at::kCPU);
  std::memcpy(out->data.data(), logits.data_ptr<float>(), out->data.size() * sizeof(float));
  return absl::OkStatus();
}

CpuModelRunner::~CpuModelRunner() {
  if (tp_ == nullptr || tp_->rank() != 0) return;
  std::string stop;  // an empty message: the workers' ServeTensorParallelWorker returns
  const absl::Status st = tp_->BroadcastMessage(&stop, 0);
  if (!st.ok()) spdlog::warn("runner: stopping the tensor-parallel workers: {}", st.ToString());
}

absl::Status CpuModelRunner::ServeTensorParallelWorker() {
  if (tp_ == nullptr || tp_->rank() == 0) {
    return absl::FailedPreconditionError("not a tensor-parallel worker rank");
  }
  const auto& c = config_;
  std::string message;
  models::DecodedBatch step;
  std::vector<float> logits;
  while (true) {
    RETURN_IF_ERROR(tp_->BroadcastMessage(&message, 0));
    if (message.empty()) return absl::OkStatus();
    RETURN_IF_ERROR(models::DecodeBatch(message, c.hidden_size, &step));
    logits.resize(step.batch.logits_indices.size() * c.vocab_size);
    // Rank 0 validated the batch before broadcasting it.
    RETURN_IF_ERROR(cpu_model_->Forward(step.batch, k_ptrs_, v_ptrs_, logits.data()));
  }
}

}  // namespace muse::runtime
