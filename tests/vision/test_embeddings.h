// A synthetic image embedding for cache and placeholder tests: every value is `id`, and the digest
// carries `id` in its first and last bytes, so distinct ids have distinct digests.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "src/vision/encoder_cache.h"

namespace muse::testing {

inline vision::ImageEmbedding TestEmbedding(uint8_t id, int rows, int hidden) {
  vision::ImageEmbedding e;
  e.num_tokens = rows;
  e.hidden_size = hidden;
  e.digest.bytes[0] = id;
  e.digest.bytes[31] = id;
  e.data = std::make_shared<std::vector<float>>(size_t(rows) * hidden, float(id));
  return e;
}

}  // namespace muse::testing
