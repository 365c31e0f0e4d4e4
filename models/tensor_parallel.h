// Megatron-style tensor parallelism (issue 20): which slice of the Llama-family weights one rank
// holds. Plain C++, shared by every backend's sharded load.
//
//   q / k / v       column-parallel by heads: rank r has query heads [q_head0, q_head0 + num_heads)
//                   and KV heads [kv_head0, kv_head0 + num_kv_heads). With fewer KV heads than
//                   ranks each rank holds the one KV head its query heads read (replicated, as vLLM
//                   does); the paged KV pool of a rank holds only its KV heads.
//   o_proj, down    row-parallel (the matching input columns), then one all-reduce of the hidden
//                   state each; the bias (o_proj with attention_bias) is added by rank 0 only.
//   gate / up       column-parallel by intermediate rows [inter0, inter0 + inter).
//   embedding       replicated (a row lookup; nothing to split).
//   lm_head         vocab-parallel: rows [vocab0, vocab0 + vocab_rows) padded to
//                   vocab_per_rank = ceil(V / size) rows, then an all-gather of the sampled rows'
//                   logits.
#pragma once

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "models/model_config.h"
#include "src/common/status.h"

namespace muse::models {

struct TensorParallelShard {
  int rank = 0;
  int size = 1;
  int64_t q_head0 = 0, num_heads = 0;
  int64_t kv_head0 = 0, num_kv_heads = 0;
  int64_t inter0 = 0, inter = 0;
  int64_t vocab0 = 0, vocab_rows = 0, vocab_per_rank = 0;
};

// The slice of rank `rank` of `size`. InvalidArgument naming the config key and the rank when the
// shapes do not split: heads or intermediate_size not divisible by size, or KV heads neither
// divisible by size nor dividing it.
inline absl::StatusOr<TensorParallelShard> MakeTensorParallelShard(const ModelConfig& c, int rank,
                                                                   int size) {
  if (size < 1 || rank < 0 || rank >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor-parallel rank ", rank, " of size ", size, " is out of range"));
  }
  auto bad = [&](const char* key, int64_t v, const char* why) {
    return absl::InvalidArgumentError(absl::StrCat("tensor-parallel rank ", rank, ": ", key, " ", v,
                                                   " ", why, " tensor-parallel size ", size));
  };
  const int64_t nH = c.num_attention_heads, nKV = c.num_key_value_heads;
  if (nH % size != 0) return bad("num_attention_heads", nH, "is not divisible by the");
  if (c.intermediate_size % size != 0) {
    return bad("intermediate_size", c.intermediate_size, "is not divisible by the");
  }
  TensorParallelShard s;
  s.rank = rank;
  s.size = size;
  s.num_heads = nH / size;
  s.q_head0 = rank * s.num_heads;
  if (nKV % size == 0) {
    s.num_kv_heads = nKV / size;
    s.kv_head0 = rank * s.num_kv_heads;
  } else if (size % nKV == 0) {
    // Fewer KV heads than ranks: every query head of this rank is in one GQA group.
    s.num_kv_heads = 1;
    s.kv_head0 = s.q_head0 / (nH / nKV);
  } else {
    return bad("num_key_value_heads", nKV, "neither divides nor is divisible by the");
  }
  s.inter = c.intermediate_size / size;
  s.inter0 = rank * s.inter;
  s.vocab_per_rank = (c.vocab_size + size - 1) / size;
  s.vocab0 = std::min<int64_t>(c.vocab_size, rank * s.vocab_per_rank);
  s.vocab_rows = std::min<int64_t>(c.vocab_size - s.vocab0, s.vocab_per_rank);
  return s;
}

}  // namespace muse::models
