// The Llama-family decoder on one GPU: weights from the spec in llama_weights.h, the forward over
// kernels/cuda (paged attention, KV write, RMSNorm, RoPE, SiLU-and-mul, row gather, cuBLAS GEMM).
// No libtorch. The runner (src/runtime/cuda) owns every buffer a step touches — activations, step
// metadata, the KV pool, the decode workspace — so their addresses stay fixed for CUDA graphs; this
// class owns only the weights and the RoPE tables, and says how large each activation must be.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/dtype.h"
#include "models/checkpoint.h"
#include "src/common/status.h"

namespace muse::models {

// Geometry of one step (the runner pads decode steps to a graph's shape).
struct CudaStepShape {
  int tokens = 0;  // rows of every activation this step
  int seqs = 0;
  int rows = 0;           // logits rows
  bool decode = false;    // every sequence has exactly one new token
  int table_width = 0;    // block-table row length on the device
  int max_seq_len = 0;    // upper bound of seq_lens (sizes the split-K decode grid)
  int max_query_len = 0;  // upper bound of a sequence's new tokens (sizes the prefill grid)
};

// Step metadata, on the device.
struct CudaStepMeta {
  const int32_t* ids = nullptr;              // ids: [tokens]
  const int32_t* positions = nullptr;        // positions: [tokens], < max_positions()
  const int64_t* slots = nullptr;            // slots: [tokens], -1 = no KV write
  const int32_t* query_start_loc = nullptr;  // query_start_loc: [seqs + 1]
  const int32_t* seq_lens = nullptr;         // seq_lens: [seqs]
  const int32_t* block_tables = nullptr;     // block_tables: [seqs, table_width]
  const int32_t* logits_rows = nullptr;      // logits_rows: [rows] token index of each logits row
};

// Device buffers of one step, each sized by LlamaCudaModel::ActivationBytes (runtime dtype).
struct CudaActivations {
  static constexpr int kCount = 8;
  void* h = nullptr;      // h: [tokens, H] residual stream
  void* x = nullptr;      // x: [tokens, H] normed input of the next GEMM
  void* qkv = nullptr;    // qkv: [tokens, (nH + 2 nKV) D] fused projections
  void* qdec = nullptr;   // qdec: [tokens, nH D] dense q for the decode kernel
  void* attn = nullptr;   // attn: [tokens, nH D] attention output
  void* o_out = nullptr;  // o_out: [tokens, H] o_proj / down_proj output
  void* gu = nullptr;     // gu: [tokens, 2 I] gate | up
  void* act = nullptr;    // act: [tokens, I] silu(gate) * up
  // Logits rows, sized for `rows`.
  void* rows = nullptr;              // rows: [rows, H] final-normed hidden of the logits rows
  float* logits = nullptr;           // logits: [rows, V] fp32
  void* decode_workspace = nullptr;  // split-K partials, DecodeWorkspaceBytes(shape)
  size_t decode_workspace_bytes = 0;
};

// Image-feature rows that replace token embeddings, already in the runtime dtype. `src` is host
// memory the caller keeps unchanged until the step's stream has passed the copy (pinned for speed).
struct CudaEmbeddingRows {
  int64_t token_index = 0;  // first token the rows replace
  int64_t num_rows = 0;
  const void* src = nullptr;  // src: [num_rows, H]
};

class LlamaCudaModel {
 public:
  // Loads every weight named by MakeLlamaWeightSpec(ckpt.config(), weight_prefix), narrowed on the
  // host to `dtype` (bf16 or fp16) and copied to the current device; q/k/v and gate/up are fused
  // by rows, a tied lm_head aliases the embedding. RoPE tables cover max_position_embeddings.
  static absl::StatusOr<std::unique_ptr<LlamaCudaModel>> Load(const Checkpoint& ckpt,
                                                              const std::string& weight_prefix,
                                                              kernels::DType dtype);
  ~LlamaCudaModel();

  const ModelConfig& config() const { return config_; }
  kernels::DType dtype() const { return dtype_; }
  int max_positions() const { return max_positions_; }

  // Bytes of each CudaActivations buffer h..act (in declaration order) for `tokens` tokens.
  std::array<size_t, CudaActivations::kCount> ActivationBytes(int64_t tokens) const;
  // Bytes of the rows buffer for `rows` logits rows (the fp32 logits come on top).
  size_t RowBytes(int64_t rows) const;
  size_t DecodeWorkspaceBytes(const CudaStepShape& shape) const;

  // Enqueues one step on `stream`: embeddings (then `embedding_rows` copied over them) → layers
  // (K/V written to the caches through meta.slots) → final norm of the logits rows → lm_head to
  // act.logits. k_caches / v_caches: per layer, [num_blocks, kKvBlockSize, nKV, D]. Graph-safe
  // when embedding_rows is empty and the handle has a fixed workspace.
  absl::Status Forward(const CudaStepShape& shape, const CudaStepMeta& meta,
                       const CudaActivations& act, const std::vector<void*>& k_caches,
                       const std::vector<void*>& v_caches,
                       const std::vector<CudaEmbeddingRows>& embedding_rows, cublasHandle_t blas,
                       cudaStream_t stream) const;

 private:
  struct Layer {
    void* in_norm = nullptr;    // [H]
    void* post_norm = nullptr;  // [H]
    void* qkv = nullptr;        // [(nH + 2 nKV) D, H]
    void* qkv_bias = nullptr;   // [(nH + 2 nKV) D] or null
    void* o = nullptr;          // [H, nH D]
    void* o_bias = nullptr;     // [H] or null
    void* gate_up = nullptr;    // [2 I, H]
    void* down = nullptr;       // [H, I]
  };
  LlamaCudaModel() = default;
  int64_t qkv_width() const;

  ModelConfig config_;
  kernels::DType dtype_ = kernels::DType::kBFloat16;
  std::vector<void*> allocations_;  // every cudaMalloc of this model (freed in the destructor)
  std::vector<Layer> layers_;
  void* embed_ = nullptr;       // [V, H]
  void* lm_head_ = nullptr;     // [V, H] (== embed_ when tied)
  void* final_norm_ = nullptr;  // [H]
  float* cos_ = nullptr;        // cos: [max_positions, D / 2] fp32
  float* sin_ = nullptr;        // sin: [max_positions, D / 2] fp32
  int max_positions_ = 0;
};

}  // namespace muse::models
