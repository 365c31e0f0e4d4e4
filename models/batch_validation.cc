#include "models/batch_validation.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace muse::models {

absl::Status ValidateBatch(const Batch& b, const BatchLimits& lim) {
  const int64_t T = b.num_tokens();
  const int64_t S = b.num_seqs();
  if (T == 0 || S == 0) return absl::InvalidArgumentError("batch: no tokens or no sequences");
  if (static_cast<int64_t>(b.positions.size()) != T) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch.positions: size ", b.positions.size(), " != num_tokens ", T));
  }
  if (static_cast<int64_t>(b.slot_mapping.size()) != T) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch.slot_mapping: size ", b.slot_mapping.size(), " != num_tokens ", T));
  }
  if (static_cast<int64_t>(b.query_start_loc.size()) != S + 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch.query_start_loc: size ", b.query_start_loc.size(), " != num_seqs + 1 = ", S + 1));
  }
  if (b.query_start_loc[0] != 0 || b.query_start_loc[S] != T) {
    return absl::InvalidArgumentError(
        "batch.query_start_loc: must start at 0 and end at num_tokens");
  }
  if (b.max_blocks_per_seq <= 0 ||
      static_cast<int64_t>(b.block_tables.size()) != S * b.max_blocks_per_seq) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch.block_tables: size ", b.block_tables.size(), " != num_seqs * ",
                     "max_blocks_per_seq = ", S, " * ", b.max_blocks_per_seq));
  }
  for (int64_t t = 0; t < T; ++t) {
    if (b.input_ids[t] < 0 || b.input_ids[t] >= lim.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("batch.input_ids[", t, "] = ", b.input_ids[t],
                                                     " outside the vocabulary [0, ", lim.vocab_size,
                                                     ")"));
    }
    if (b.positions[t] < 0)
      return absl::InvalidArgumentError(absl::StrCat("batch.positions[", t, "] is negative"));
    const int64_t slot = b.slot_mapping[t];
    if (slot < -1 || slot >= lim.num_kv_blocks * kernels::kKvBlockSize) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch.slot_mapping[", t, "] = ", slot, " outside the pool of ",
                       lim.num_kv_blocks * kernels::kKvBlockSize, " slots"));
    }
  }
  for (int64_t s = 0; s < S; ++s) {
    const int64_t q = b.query_start_loc[s + 1] - b.query_start_loc[s];
    if (q <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch.query_start_loc: sequence ", s, " has ", q, " new tokens"));
    }
    const int64_t len = b.seq_lens[s];
    if (len < q) {
      return absl::InvalidArgumentError(absl::StrCat("batch.seq_lens[", s, "] = ", len,
                                                     " is shorter than its ", q, " new tokens"));
    }
    const int64_t nb = (len + kernels::kKvBlockSize - 1) / kernels::kKvBlockSize;
    if (nb > b.max_blocks_per_seq) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch.seq_lens[", s, "] = ", len, " needs ", nb,
                       " blocks but max_blocks_per_seq = ", b.max_blocks_per_seq));
    }
    for (int64_t j = 0; j < nb; ++j) {
      const int32_t blk = b.block_tables[s * b.max_blocks_per_seq + j];
      if (blk < 0 || blk >= lim.num_kv_blocks) {
        return absl::InvalidArgumentError(absl::StrCat("batch.block_tables[", s, "][", j,
                                                       "] = ", blk, " outside the pool of ",
                                                       lim.num_kv_blocks, " blocks"));
      }
    }
  }
  for (size_t i = 0; i < b.logits_indices.size(); ++i) {
    if (b.logits_indices[i] < 0 || b.logits_indices[i] >= T) {
      return absl::InvalidArgumentError(absl::StrCat(
          "batch.logits_indices[", i, "] = ", b.logits_indices[i], " outside [0, ", T, ")"));
    }
  }
  int64_t prev_end = 0;
  for (size_t i = 0; i < b.embedding_overrides.size(); ++i) {
    const auto& e = b.embedding_overrides[i];
    if (e.data == nullptr || e.num_rows <= 0 || e.token_index < prev_end ||
        static_cast<int64_t>(e.token_index) + e.num_rows > T) {
      return absl::InvalidArgumentError(absl::StrCat("batch.embedding_overrides[", i,
                                                     "]: rows must be non-empty, in order, "
                                                     "non-overlapping and inside the batch"));
    }
    prev_end = e.token_index + e.num_rows;
  }
  return absl::OkStatus();
}

namespace {

absl::Status BadSampling(absl::string_view field, const auto&... rest) {
  return absl::InvalidArgumentError(absl::StrCat("sampling.", field, rest...));
}

// One CSR list: offsets empty (no entries) or [R + 1] from 0, non-decreasing, ending at ids.size();
// ids in [0, vocab); the parallel value lists as long as ids.
absl::Status CheckCsr(absl::string_view name, const std::vector<int32_t>& offsets,
                      const std::vector<int32_t>& ids, size_t values, absl::string_view values_name,
                      int64_t rows, int64_t vocab) {
  const std::string off = absl::StrCat(name, "_offsets");
  const std::string id = absl::StrCat(name, "_ids");
  if (offsets.empty()) {
    if (!ids.empty()) return BadSampling(off, ": empty but ", id, " has ", ids.size(), " entries");
  } else {
    if (static_cast<int64_t>(offsets.size()) != rows + 1)
      return BadSampling(off, ": size ", offsets.size(), " != num_rows + 1 = ", rows + 1);
    if (offsets[0] != 0) return BadSampling(off, "[0] = ", offsets[0], " != 0");
    for (int64_t r = 0; r < rows; ++r) {
      if (offsets[r + 1] < offsets[r]) {
        return BadSampling(off, "[", r + 1, "] = ", offsets[r + 1], " < ", off, "[", r,
                           "] = ", offsets[r]);
      }
    }
    if (static_cast<size_t>(offsets[rows]) != ids.size())
      return BadSampling(off, "[", rows, "] = ", offsets[rows], " != ", id, " size ", ids.size());
  }
  if (!values_name.empty() && values != ids.size())
    return BadSampling(values_name, ": size ", values, " != ", id, " size ", ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab)
      return BadSampling(id, "[", i, "] = ", ids[i], " outside the vocabulary [0, ", vocab, ")");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateSamplingInputs(const SamplingInputs& in, int64_t num_rows,
                                    int64_t vocab_size) {
  if (static_cast<int64_t>(in.rows.size()) != num_rows)
    return BadSampling("rows: size ", in.rows.size(), " != number of logits rows ", num_rows);
  for (int64_t r = 0; r < num_rows; ++r) {
    const SamplingRowParams& p = in.rows[r];
    const std::string f = absl::StrCat("rows[", r, "].");
    if (!std::isfinite(p.temperature) || p.temperature < 0)
      return BadSampling(f, "temperature = ", p.temperature, " must be finite and >= 0");
    if (p.top_k < -1) return BadSampling(f, "top_k = ", p.top_k, " must be >= -1");
    if (!(p.top_p > 0 && p.top_p <= 1))
      return BadSampling(f, "top_p = ", p.top_p, " must be in (0, 1]");
    if (!(p.min_p >= 0 && p.min_p <= 1))
      return BadSampling(f, "min_p = ", p.min_p, " must be in [0, 1]");
    if (!(p.repetition_penalty > 0) || !std::isfinite(p.repetition_penalty)) {
      return BadSampling(f, "repetition_penalty = ", p.repetition_penalty,
                         " must be finite and > 0");
    }
    if (!(p.presence_penalty >= -2 && p.presence_penalty <= 2))
      return BadSampling(f, "presence_penalty = ", p.presence_penalty, " must be in [-2, 2]");
    if (!(p.frequency_penalty >= -2 && p.frequency_penalty <= 2))
      return BadSampling(f, "frequency_penalty = ", p.frequency_penalty, " must be in [-2, 2]");
    if (p.logprobs < -1 || p.logprobs > SampledTokens::kMaxTopLogprobs) {
      return BadSampling(f, "logprobs = ", p.logprobs, " must be in [-1, ",
                         SampledTokens::kMaxTopLogprobs, "]");
    }
    if (p.sample_index < 0) return BadSampling(f, "sample_index = ", p.sample_index, " < 0");
    if (p.generated < 0) return BadSampling(f, "generated = ", p.generated, " < 0");
  }
  RETURN_IF_ERROR(
      CheckCsr("masked", in.masked_offsets, in.masked_ids, 0, "", num_rows, vocab_size));
  RETURN_IF_ERROR(CheckCsr("bias", in.bias_offsets, in.bias_ids, in.bias_values.size(),
                           "bias_values", num_rows, vocab_size));
  for (size_t i = 0; i < in.bias_values.size(); ++i) {
    if (!std::isfinite(in.bias_values[i]))
      return BadSampling("bias_values[", i, "] = ", in.bias_values[i], " is not finite");
  }
  RETURN_IF_ERROR(CheckCsr("penalty", in.penalty_offsets, in.penalty_ids, in.penalty_counts.size(),
                           "penalty_counts", num_rows, vocab_size));
  for (size_t i = 0; i < in.penalty_counts.size(); ++i) {
    if (in.penalty_counts[i] < 0)
      return BadSampling("penalty_counts[", i, "] = ", in.penalty_counts[i], " < 0");
  }
  const int64_t words = (vocab_size + 31) / 32;
  if (!in.allowed_bitmask.empty() &&
      static_cast<int64_t>(in.allowed_bitmask.size()) != num_rows * words) {
    return BadSampling("allowed_bitmask: size ", in.allowed_bitmask.size(), " != num_rows * ceil(",
                       "vocab_size / 32) = ", num_rows * words, " (or empty)");
  }
  return absl::OkStatus();
}

}  // namespace muse::models
