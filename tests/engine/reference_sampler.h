// The host sampler as it was before the batched, fused implementation (src/engine/sampler.cc),
// kept verbatim as the oracle of the differential test: the production sampler must return the
// same token ids and bit-identical logprobs for every input.
#pragma once

#include <cstdint>
#include <vector>

#include "src/engine/request.h"
#include "src/engine/sampler.h"

namespace muse::engine::testing {

// Uniform in [0, 1) for (seed, stream, step): splitmix64 over the three counters.
double ReferenceCounterUniform(uint64_t seed, uint64_t stream, uint64_t step);

class ReferenceSampler {
 public:
  explicit ReferenceSampler(int vocab_size) : vocab_size_(vocab_size) {}
  // Not thread-safe (scratch buffers); one per engine thread.
  SampleResult Sample(const SamplingRow& row);

 private:
  void ApplyPenalties(const SamplingRow& row);
  int32_t Draw(const SamplingRow& row, const float* logits, double u);

  int vocab_size_;
  std::vector<float> work_;  // processed logits (when any knob modifies them)
  std::vector<float> probs_;
  std::vector<int32_t> idx_;
  std::vector<int32_t> count_;  // generated-token counts (penalties), kept zeroed between rows
  std::vector<uint8_t> seen_;   // prompt or generated (repetition penalty), kept zeroed
};

}  // namespace muse::engine::testing
