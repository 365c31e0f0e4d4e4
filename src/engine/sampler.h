// Token sampling on host fp32 logits, one row per sequence that reached the end of its tokens.
// Order per row: allowed-token bitmask (structured output) -> min_tokens mask -> logit bias ->
// repetition/presence/frequency penalties -> (logprobs taken here, so they are those of the
// masked distribution) -> greedy argmax, or temperature -> top-k -> min-p -> top-p -> draw.
// The same order, bit for bit, as the device sampler (kernels/cuda/sampling.h).
// Randomness is counter-based: the draw for (seed, sample index, generated-token index) is a pure
// function, so a seeded request gives the same tokens in any batch mix, and after preemption.
//
// Each row costs about one streaming read of its logits: a fused max / argmax pass (which for
// top-k also keeps every 256-token block's max logit, so top-k needs no exp pass: candidates are
// the few tokens near the k-th largest block max, then nth_element), and for plain temperature
// sampling one exp pass that also sums 256-token blocks so the draw rescans only its block;
// penalties touch only the sequence's distinct tokens; a bitmask costs a masked copy into the
// thread's scratch for constrained rows only. SampleBatch spreads rows over a thread
// pool. Results are bit-identical to the previous one-row implementation
// (tests/engine/reference_sampler.cc, the differential test's oracle).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "src/engine/request.h"

namespace muse::kernels::cpu {
class ThreadPool;
}  // namespace muse::kernels::cpu

namespace muse::engine {

struct SamplingRow {
  const float* logits = nullptr;  // [vocab_size]
  const SamplingParams* params = nullptr;
  const std::vector<int32_t>* tokens = nullptr;  // prompt + generated so far
  int num_prompt_tokens = 0;
  uint64_t seed = 0;     // the request's seed (params.seed or one drawn by the engine)
  int sample_index = 0;  // RNG stream within the request
  const std::vector<int64_t>* eos_token_ids = nullptr;  // masked before min_tokens
  // Structured output, nullable: [ceil(vocab_size / 32)] words, token i allowed iff bit i % 32 of
  // word i / 32 is set; the others become -inf before every other step (the device sampler's
  // allowed_bitmask). A row with a bitmask skips the min_tokens mask: the caller folds it into the
  // bitmask (the engine does, except where it would leave no token: the grammar wins). A row that
  // allows nothing samples as all -inf logits do (deterministic: greedy gives id 0); the engine
  // never uses that token.
  const uint32_t* allowed_bitmask = nullptr;
};

struct SampleResult {
  int32_t token_id = 0;
  TokenLogprobs logprobs;  // filled when params->logprobs >= 0
};

// Uniform in [0, 1) for (seed, stream, step): splitmix64 over the three counters.
double CounterUniform(uint64_t seed, uint64_t stream, uint64_t step);

class Sampler {
 public:
  explicit Sampler(int vocab_size);
  ~Sampler();
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  // Not thread-safe (scratch buffers); one per engine thread.
  SampleResult Sample(const SamplingRow& row);
  // Samples every row (results[i] for rows[i]; the spans have the same size), spreading rows over
  // `pool` (null: the calling thread). Same results as Sample() row by row, in any thread count.
  void SampleBatch(std::span<const SamplingRow> rows, std::span<SampleResult> results,
                   kernels::cpu::ThreadPool* pool);

  struct Scratch;  // per-thread buffers (sampler.cc)

 private:
  Scratch& ScratchFor(int thread);

  int vocab_size_;
  std::vector<std::unique_ptr<Scratch>> scratch_;
};

}  // namespace muse::engine
