// The one batch interface every backend (CPU ATen, CUDA) executes.
//
// A step carries the new tokens of many sequences, flattened sequence-major: prefill chunks and
// single decode tokens mix freely. KV lives in the paged pool of kernels/kv_layout.h.
//
// Sequence i's new tokens are input_ids[query_start_loc[i] .. query_start_loc[i+1]). They sit at
// the end of its context: the j-th new token has context index seq_lens[i] - q_len_i + j, attends
// to every cached token and causally to the new ones, and its K/V are written to slot_mapping[t]
// before attention runs (slot -1 = do not write, e.g. padding). Sequence i's context token c lives
// in block block_tables[i * max_blocks_per_seq + c / kKvBlockSize] at offset c % kKvBlockSize.
// This header is plain C++ (no libtorch) so the engine can build batches without heavy includes.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/kv_layout.h"

namespace muse::models {

// Rows of input embeddings that replace token embeddings (image features from the vision tower).
struct EmbeddingOverride {
  int32_t token_index = 0;      // first flattened token index the rows apply to
  int32_t num_rows = 0;         // consecutive tokens replaced
  const float* data = nullptr;  // [num_rows, hidden_size], fp32 host memory owned by the caller
};

struct Batch {
  std::vector<int32_t> input_ids;        // [num_tokens]
  std::vector<int32_t> positions;        // [num_tokens] RoPE position of each token
  std::vector<int32_t> query_start_loc;  // [num_seqs + 1], query_start_loc[0] == 0
  std::vector<int32_t> seq_lens;         // [num_seqs] context length after this step (cached + new)
  std::vector<int32_t> block_tables;     // [num_seqs, max_blocks_per_seq] row-major; unused = -1
  int32_t max_blocks_per_seq = 0;
  std::vector<int64_t> slot_mapping;    // [num_tokens] destination slot of each new K/V, -1 = skip
  std::vector<int32_t> logits_indices;  // [num_logits] flattened token indices to return logits for
  std::vector<EmbeddingOverride> embedding_overrides;  // optional, sorted, non-overlapping

  int num_seqs() const { return static_cast<int>(seq_lens.size()); }
  int num_tokens() const { return static_cast<int>(input_ids.size()); }
};

// Logits of the requested rows, fp32 on the host: data[row * vocab_size + token].
struct Logits {
  int32_t num_rows = 0;
  int32_t vocab_size = 0;
  std::vector<float> data;
  const float* row(int r) const { return data.data() + static_cast<int64_t>(r) * vocab_size; }
};

}  // namespace muse::models
