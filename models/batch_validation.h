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

}  // namespace muse::models
