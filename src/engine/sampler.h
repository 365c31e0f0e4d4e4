// Token sampling on host fp32 logits, one row per sequence that reached the end of its tokens.
// Order per row: min_tokens mask -> logit bias -> repetition/presence/frequency penalties ->
// (logprobs taken here) -> greedy argmax, or temperature -> top-k -> min-p -> top-p -> draw.
// Randomness is counter-based: the draw for (seed, sample index, generated-token index) is a pure
// function, so a seeded request gives the same tokens in any batch mix, and after preemption.
#pragma once

#include <cstdint>
#include <vector>

#include "src/engine/request.h"

namespace muse::engine {

struct SamplingRow {
  const float* logits = nullptr;  // [vocab_size]
  const SamplingParams* params = nullptr;
  const std::vector<int32_t>* tokens = nullptr;  // prompt + generated so far
  int num_prompt_tokens = 0;
  uint64_t seed = 0;     // the request's seed (params.seed or one drawn by the engine)
  int sample_index = 0;  // RNG stream within the request
  const std::vector<int64_t>* eos_token_ids = nullptr;  // masked before min_tokens
};

struct SampleResult {
  int32_t token_id = 0;
  TokenLogprobs logprobs;  // filled when params->logprobs >= 0
};

// Uniform in [0, 1) for (seed, stream, step): splitmix64 over the three counters.
double CounterUniform(uint64_t seed, uint64_t stream, uint64_t step);

class Sampler {
 public:
  explicit Sampler(int vocab_size) : vocab_size_(vocab_size) {}
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

}  // namespace muse::engine
