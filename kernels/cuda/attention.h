// Attention over the paged KV cache (layout in kernels/kv_layout.h).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/dtype.h"
#include "kernels/kv_layout.h"

namespace muse::kernels {

// ---- decode: one query token per sequence, split-K flash-decoding ----
struct PagedDecodeParams {
  void* out;                    // out: [num_seqs, num_heads, head_dim]
  const void* q;                // q: [num_seqs, num_heads, head_dim]
  const void* k_cache;          // k_cache: [num_blocks, kKvBlockSize, num_kv_heads, head_dim]
  const void* v_cache;          // v_cache: [num_blocks, kKvBlockSize, num_kv_heads, head_dim]
  const int32_t* block_tables;  // block_tables: [num_seqs, max_blocks_per_seq]
  const int32_t* seq_lens;      // seq_lens: [num_seqs] context length incl. the query token
  int num_seqs = 0;
  int num_heads = 0;
  int num_kv_heads = 0;  // num_heads % num_kv_heads == 0 (GQA group = ratio)
  int head_dim = 0;      // 16, 32, 64, 80, 96, 128
  int max_blocks_per_seq = 0;
  int max_seq_len = 0;         // host-side upper bound of seq_lens (sizes the split)
  float scale = 0.f;           // softmax scale, usually 1/sqrt(head_dim)
  int sliding_window = 0;      // > 0: attend to the last sliding_window tokens only
  void* workspace = nullptr;   // device scratch for split-K partials
  size_t workspace_bytes = 0;  // >= paged_decode_workspace_size(params)
  DType dtype = DType::kBFloat16;
};

// Scratch the split-K path needs (0 when one partition suffices). Depends on the current device.
size_t paged_decode_workspace_size(const PagedDecodeParams& p);
cudaError_t launch_paged_decode_attention(const PagedDecodeParams& p, cudaStream_t stream);

// ---- prefill / chunked prefill: variable-length queries against the paged cache ----
// New K/V must already be in the cache (launch_reshape_and_cache). Query j of seq i has context
// index seq_lens[i] - q_len_i + j and attends to context indices <= that (and, with a window,
// > that - sliding_window). bf16 / fp16 only (mma.sync tensor cores).
struct PagedPrefillParams {
  void* out;                       // out: [num_tokens, num_heads, head_dim], row stride out_stride
  const void* q;                   // q: [num_tokens, num_heads, head_dim], row stride q_stride
  const void* k_cache;             // k_cache: [num_blocks, kKvBlockSize, num_kv_heads, head_dim]
  const void* v_cache;             // v_cache: [num_blocks, kKvBlockSize, num_kv_heads, head_dim]
  const int32_t* query_start_loc;  // query_start_loc: [num_seqs + 1]
  const int32_t* seq_lens;         // seq_lens: [num_seqs] context length after the step
  const int32_t* block_tables;     // block_tables: [num_seqs, max_blocks_per_seq]
  int num_seqs = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;  // 16, 32, 64, 80, 96, 128
  int max_blocks_per_seq = 0;
  int max_query_len = 0;   // host-side max of q_len (sizes the grid)
  int64_t q_stride = 0;    // 0 = num_heads * head_dim
  int64_t out_stride = 0;  // 0 = num_heads * head_dim
  float scale = 0.f;
  int sliding_window = 0;
  DType dtype = DType::kBFloat16;
};

cudaError_t launch_paged_prefill_attention(const PagedPrefillParams& p, cudaStream_t stream);

}  // namespace muse::kernels
