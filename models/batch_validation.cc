#include "models/batch_validation.h"

#include "absl/strings/str_cat.h"

namespace muse::models {

absl::Status ValidateBatch(const Batch& b, const BatchLimits& lim) {
  const int64_t T = b.num_tokens();
  const int64_t S = b.num_seqs();
  if (T == 0 || S == 0) return absl::InvalidArgumentError("batch: no tokens or no sequences");
  if (static_cast<int64_t>(b.positions.size()) != T)
    return absl::InvalidArgumentError(
        absl::StrCat("batch.positions: size ", b.positions.size(), " != num_tokens ", T));
  if (static_cast<int64_t>(b.slot_mapping.size()) != T)
    return absl::InvalidArgumentError(
        absl::StrCat("batch.slot_mapping: size ", b.slot_mapping.size(), " != num_tokens ", T));
  if (static_cast<int64_t>(b.query_start_loc.size()) != S + 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "batch.query_start_loc: size ", b.query_start_loc.size(), " != num_seqs + 1 = ", S + 1));
  if (b.query_start_loc[0] != 0 || b.query_start_loc[S] != T)
    return absl::InvalidArgumentError(
        "batch.query_start_loc: must start at 0 and end at num_tokens");
  if (b.max_blocks_per_seq <= 0 ||
      static_cast<int64_t>(b.block_tables.size()) != S * b.max_blocks_per_seq)
    return absl::InvalidArgumentError(
        absl::StrCat("batch.block_tables: size ", b.block_tables.size(), " != num_seqs * ",
                     "max_blocks_per_seq = ", S, " * ", b.max_blocks_per_seq));
  for (int64_t t = 0; t < T; ++t) {
    if (b.input_ids[t] < 0 || b.input_ids[t] >= lim.vocab_size)
      return absl::InvalidArgumentError(absl::StrCat("batch.input_ids[", t, "] = ", b.input_ids[t],
                                                     " outside the vocabulary [0, ", lim.vocab_size,
                                                     ")"));
    if (b.positions[t] < 0)
      return absl::InvalidArgumentError(absl::StrCat("batch.positions[", t, "] is negative"));
    const int64_t slot = b.slot_mapping[t];
    if (slot < -1 || slot >= lim.num_kv_blocks * kernels::kKvBlockSize)
      return absl::InvalidArgumentError(
          absl::StrCat("batch.slot_mapping[", t, "] = ", slot, " outside the pool of ",
                       lim.num_kv_blocks * kernels::kKvBlockSize, " slots"));
  }
  for (int64_t s = 0; s < S; ++s) {
    const int64_t q = b.query_start_loc[s + 1] - b.query_start_loc[s];
    if (q <= 0)
      return absl::InvalidArgumentError(
          absl::StrCat("batch.query_start_loc: sequence ", s, " has ", q, " new tokens"));
    const int64_t len = b.seq_lens[s];
    if (len < q)
      return absl::InvalidArgumentError(absl::StrCat("batch.seq_lens[", s, "] = ", len,
                                                     " is shorter than its ", q, " new tokens"));
    const int64_t nb = (len + kernels::kKvBlockSize - 1) / kernels::kKvBlockSize;
    if (nb > b.max_blocks_per_seq)
      return absl::InvalidArgumentError(
          absl::StrCat("batch.seq_lens[", s, "] = ", len, " needs ", nb,
                       " blocks but max_blocks_per_seq = ", b.max_blocks_per_seq));
    for (int64_t j = 0; j < nb; ++j) {
      const int32_t blk = b.block_tables[s * b.max_blocks_per_seq + j];
      if (blk < 0 || blk >= lim.num_kv_blocks)
        return absl::InvalidArgumentError(absl::StrCat("batch.block_tables[", s, "][", j,
                                                       "] = ", blk, " outside the pool of ",
                                                       lim.num_kv_blocks, " blocks"));
    }
  }
  for (size_t i = 0; i < b.logits_indices.size(); ++i) {
    if (b.logits_indices[i] < 0 || b.logits_indices[i] >= T)
      return absl::InvalidArgumentError(absl::StrCat(
          "batch.logits_indices[", i, "] = ", b.logits_indices[i], " outside [0, ", T, ")"));
  }
  int64_t prev_end = 0;
  for (size_t i = 0; i < b.embedding_overrides.size(); ++i) {
    const auto& e = b.embedding_overrides[i];
    if (e.data == nullptr || e.num_rows <= 0 || e.token_index < prev_end ||
        static_cast<int64_t>(e.token_index) + e.num_rows > T)
      return absl::InvalidArgumentError(absl::StrCat("batch.embedding_overrides[", i,
                                                     "]: rows must be non-empty, in order, "
                                                     "non-overlapping and inside the batch"));
    prev_end = e.token_index + e.num_rows;
  }
  return absl::OkStatus();
}

}  // namespace muse::models
