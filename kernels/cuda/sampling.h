// Batched token sampling on device from fp32 logits.
//
// Per row: temperature == 0 (or top_k == 1) -> greedy argmax (lowest index on ties). Otherwise
// the filters apply in this order on logits / temperature: top-k (ties with the k-th value kept,
// as HF), top-p over the top-k survivors (smallest set of largest probabilities with mass >=
// top_p, ties kept), min-p (p >= min_p * p_max). The token is drawn with the Gumbel-max trick,
// u_i = Philox4x32-10(counter = {i, step_lo, step_hi, 0}, key = seed): a row's result depends only
// on its own logits, params, seed and step, never on the other rows of the batch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace muse::kernels {

struct SamplingParams {
  const float* logits;       // logits: [num_rows, vocab], row stride logits_stride
  int32_t* out_ids;          // out_ids: [num_rows]
  float* out_logprobs;       // out_logprobs: [num_rows] log_softmax(raw logits)[id]; nullable
  const float* temperature;  // temperature: [num_rows]; 0 = greedy
  const int32_t* top_k;      // top_k: [num_rows]; <= 0 or >= vocab = off; nullable
  const float* top_p;        // top_p: [num_rows]; >= 1 = off; nullable
  const float* min_p;        // min_p: [num_rows]; <= 0 = off; nullable
  const uint64_t* seeds;     // seeds: [num_rows]
  const uint64_t* steps;     // steps: [num_rows] per-request counter (e.g. tokens generated so far)
  int num_rows = 0;
  int vocab = 0;
  int64_t logits_stride = 0;  // 0 = vocab
};

cudaError_t launch_sampling(const SamplingParams& p, cudaStream_t stream);

}  // namespace muse::kernels
