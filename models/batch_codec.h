// One step's Batch as bytes, for tensor parallelism (issue 20): rank 0 broadcasts every step's
// batch to the worker ranks, which run the same forward on their shard. Embedding overrides (image
// or audio rows) travel with their data. Plain C++; the bytes only go between the ranks of one
// deployment (same build), but decoding still checks every length against the message, so a
// corrupt message is an error, never an out-of-bounds read.
#pragma once

#include <string>
#include <vector>

#include "models/batch.h"
#include "src/common/status.h"

namespace muse::models {

// `hidden_size` sizes the override rows.
std::string EncodeBatch(const Batch& batch, int64_t hidden_size);

// A decoded batch; its overrides point into `override_data`, so keep the two together.
struct DecodedBatch {
  Batch batch;
  std::vector<float> override_data;
};

// InvalidArgument naming what is malformed (a cut message, a length past the end, trailing bytes,
// a wrong magic).
absl::Status DecodeBatch(const std::string& bytes, int64_t hidden_size, DecodedBatch* out);

}  // namespace muse::models
