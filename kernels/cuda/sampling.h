// Batched token sampling on device from fp32 logits, bit-identical to the host sampler
// (engine::Sampler::Sample, src/engine/sampler.cc): for the same logits, knobs, seed, sample index
// and step a row returns the same token id, the same logprob float bits and the same top-logprobs
// list (ids and float bits). tests/engine/device_sampler_parity_test.cc checks this EXACTLY under
// the CUDA emulator and on a GPU.
//
// Per row, in the host's order: allowed_bitmask (-inf outside it; host: same bitmask) ->
// masked ids (eos/stop until min_tokens) -> logit_bias in list order -> repetition (every listed
// token: divide positive logits, multiply the others) and presence/frequency (listed tokens with a
// generated count > 0) -> logprobs are taken on these logits -> temperature 0: first max index;
// otherwise probs = exp((l - max) / T) with the host's polynomial, top-k / min-p / top-p by the
// host's threshold search and candidate sort (prob desc, id asc), and the draw
// u = CounterUniform(seed, sample_index, generated) (splitmix64) by inverse CDF. Every float and
// double operation happens in the host's order and rounding (no FMA contraction); sums the host
// accumulates sequentially per lane are accumulated sequentially here too, one thread per lane.
//
// What parity also needs from the host build: sampler.cc compiled without FMA contraction. The
// x86-64 baseline ISA has no FMA, and src/engine/CMakeLists.txt passes -ffp-contract=off; never
// build it with -march=native (x86-64-v3) or for aarch64 without that flag, since GCC's gnu++20
// default (-ffp-contract=fast) would fuse e.g. the exp polynomial's p * r + c. Also no FTZ/DAZ
// (-ffast-math). The device side never fuses (see sampling.cu).
// Not bit-matched: NaN logits (the host's result then depends on its lane layout), NaN payloads,
// and on a GPU the last bit of log(sum) in rare cases (CUDA's double log is within 1 ulp, glibc's
// nearly always correctly rounded; the float it is rounded to differs only when that double lies
// within an ulp of a float rounding boundary). Under the emulator log is glibc's.
//
// A row's result depends only on its own inputs, never on the other rows of the batch.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace muse::kernels {

constexpr int kSamplingMaxTopLogprobs = 20;  // = the server's kMaxLogprobs

// The knobs of one row (engine::SamplingParams plus the row's RNG counters). Rows outside the
// host's validated ranges (request.cc: temperature finite >= 0, top_k >= -1, top_p in (0, 1],
// min_p in [0, 1], repetition_penalty finite > 0, presence/frequency in [-2, 2], logprobs in
// [-1, 20]) are not sampled: their id is -1 and their logprobs NaN.
struct SamplingRowParams {
  float temperature = 1.0f;  // 0 = greedy (first maximum)
  int32_t top_k = 0;         // <= 0 or >= vocab = off
  float top_p = 1.0f;        // 1 = off
  float min_p = 0.0f;        // 0 = off
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int32_t logprobs = -1;     // -1 = none; k in [0, 20]: logprob of the token + top-k alternatives
  uint64_t seed = 0;         // the request's seed
  int32_t sample_index = 0;  // RNG stream within the request (host: SamplingRow::sample_index)
  int32_t generated = 0;     // tokens generated so far (the RNG step)
};

// Every pointer is device memory. The three per-row lists are CSR: offsets [num_rows + 1] (row r's
// entries are [offsets[r], offsets[r + 1])); a null offsets pointer means no entries for any row.
// Ids outside [0, vocab) are ignored, as the host ignores them.
struct SamplingArgs {
  const float* logits = nullptr;  // [num_rows, vocab], row stride logits_stride (0 = vocab)
  int64_t logits_stride = 0;
  int num_rows = 0;
  int vocab = 0;
  const SamplingRowParams* params = nullptr;  // [num_rows]

  // Structured output: nullable [num_rows, ceil(vocab / 32)] words; token i of row r is allowed
  // iff bit i % 32 of word r * ceil(vocab / 32) + i / 32 is set. Disallowed logits become -inf
  // before every other step, as SamplingRow::allowed_bitmask on the host, whose rows then skip the
  // min_tokens mask: give such rows no masked ids (the caller folds min_tokens into the bitmask).
  const uint32_t* allowed_bitmask = nullptr;

  // eos/stop ids masked to -inf while generated < min_tokens (the caller decides; host: eos ids
  // unless ignore_eos, then stop_token_ids).
  const int32_t* masked_offsets = nullptr;
  const int32_t* masked_ids = nullptr;
  // logit_bias entries in the host's application order (the request's list order; a repeated id
  // is added twice, in order).
  const int32_t* bias_offsets = nullptr;
  const int32_t* bias_ids = nullptr;
  const float* bias_values = nullptr;
  // Penalty tokens: the DISTINCT ids of prompt + generated tokens, in first-occurrence order, each
  // with its count among the generated tokens. Every listed token takes the repetition penalty
  // (host: repetition over prompt + generated), those with count > 0 the presence/frequency ones;
  // so no separate repetition flag is needed. Ignored for a row whose knobs are all off.
  const int32_t* penalty_offsets = nullptr;
  const int32_t* penalty_ids = nullptr;
  const int32_t* penalty_counts = nullptr;

  int32_t* out_ids = nullptr;         // [num_rows]
  float* out_logprobs = nullptr;      // [num_rows] nullable; 0 where params.logprobs < 0
  int32_t* out_top_ids = nullptr;     // [num_rows, 20] nullable; unused slots -1
  float* out_top_logprobs = nullptr;  // [num_rows, 20] nullable; unused slots -inf

  // Scratch from sampling_workspace_bytes(rows, vocab): rows at a time are sampled in it (more rows
  // are processed in chunks of that many), so size it for the batch or for a chunk.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// Workspace for sampling `rows` rows of `vocab` logits at once (per row: the modified logits,
// the probabilities, per-256-block sums, and for vocab > 4096 the candidate sort keys).
size_t sampling_workspace_bytes(int rows, int vocab);

// cudaErrorInvalidValue for null required pointers, num_rows < 0, vocab <= 0, a stride below
// vocab or a workspace smaller than one row needs. Asynchronous on `stream`.
cudaError_t launch_sampling(const SamplingArgs& args, cudaStream_t stream);

}  // namespace muse::kernels
