// fp32 attention over the paged KV cache of models/batch.h (kernels/kv_layout.h) on the CPU (AVX2 +
// FMA; check PackedGemmSupported() first). Prefill chunks and decode tokens of many sequences in
// one call: each new token attends to every cached token of its sequence and causally to the new
// ones (and only to the last `sliding_window` context positions when that is > 0). Every head of a
// token is computed in one pass over its sequence's cache ([token][kv head][dim] rows, one
// contiguous run per block), so each cached K/V row is read once per token for all GQA heads.
#pragma once

#include <cstdint>

#include "kernels/cpu/thread_pool.h"

namespace muse::kernels::cpu {

struct PagedAttentionArgs {
  const float* q = nullptr;  // [T, num_heads, head_dim], row stride q_stride (RoPE applied)
  int64_t q_stride = 0;
  const float* k_cache = nullptr;  // [num_blocks, block_size, num_kv_heads, head_dim]
  const float* v_cache = nullptr;  // same layout; the new tokens' K/V are already written
  float* out = nullptr;            // [T, num_heads, head_dim], row stride out_stride
  int64_t out_stride = 0;
  int num_heads = 0, num_kv_heads = 0, head_dim = 0, block_size = 16;
  float scale = 1.0f;
  int sliding_window = 0;  // <= 0: full causal attention
  int num_seqs = 0;
  const int32_t* query_start_loc = nullptr;  // [num_seqs + 1]
  const int32_t* seq_lens = nullptr;         // [num_seqs] context length including new tokens
  const int32_t* block_tables = nullptr;     // [num_seqs, max_blocks_per_seq]
  int max_blocks_per_seq = 0;
};

void PagedAttention(const PagedAttentionArgs& a, ThreadPool& pool);

}  // namespace muse::kernels::cpu
