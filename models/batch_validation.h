// Structural checks of a models::Batch against a pool and a model, shared by every backend,
// so a malformed batch is an InvalidArgument naming the field and never an out-of-bounds access.
#pragma once

#include <cstdint>

#include "models/batch.h"
#include "src/common/status.h"

namespace muse::models {

struct BatchLimits {
  int64_t vocab_size = 0;
  int64_t num_kv_blocks = 0;
  int64_t hidden_size = 0;
};

absl::Status ValidateBatch(const Batch& batch, const BatchLimits& limits);

// Checks sampling inputs for `num_rows` logits rows of `vocab_size` tokens: one params entry per
// row, knobs in the host sampler's validated ranges, CSR offsets of R + 1 entries from 0,
// non-decreasing, ending at their list's size, ids in [0, vocab_size), counts >= 0, allowed_bitmask
// empty or [num_rows, ceil(vocab_size / 32)] (its size only: its words may still be written).
// Errors are InvalidArgument naming the field (sampling.rows[r].top_p, sampling.bias_offsets, ...).
absl::Status ValidateSamplingInputs(const SamplingInputs& in, int64_t num_rows, int64_t vocab_size);

}  // namespace muse::models
