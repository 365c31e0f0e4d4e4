// The one batch interface every backend (CPU ATen, CUDA) executes.
//
// A step carries the new tokens of many sequences, flattened sequence-major: prefill chunks and
// single decode tokens mix freely. KV lives in the paged pool of kernels/kv_layout.h.
//
// Sequence i's new tokens are input_ids[query_start_loc[i] .. query_start_loc[i+1]). They sit at
// the end of its context: the j-th new token has context index seq_lens[i] - q_len_i + j, attends
// to every cached token and causally to the new ones, and its K/V are written to slot_mapping[t]
// before attention runs (slot -1 = do not write, e.g. padding). Sequence i's context token c lives
// in block block_tables[i * max_blocks_per_seq + c / kKvBlockSize] at offset c % kKvBlockSize.
// This header is plain C++ (no libtorch) so the engine can build batches without heavy includes.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/kv_layout.h"

namespace muse::models {

// Rows of input embeddings that replace token embeddings (image features from the vision tower).
struct EmbeddingOverride {
  int32_t token_index = 0;      // first flattened token index the rows apply to
  int32_t num_rows = 0;         // consecutive tokens replaced
  const float* data = nullptr;  // [num_rows, hidden_size], fp32 host memory owned by the caller
};

struct Batch {
  std::vector<int32_t> input_ids;        // [num_tokens]
  std::vector<int32_t> positions;        // [num_tokens] RoPE position of each token
  std::vector<int32_t> query_start_loc;  // [num_seqs + 1], query_start_loc[0] == 0
  std::vector<int32_t> seq_lens;         // [num_seqs] context length after this step (cached + new)
  std::vector<int32_t> block_tables;     // [num_seqs, max_blocks_per_seq] row-major; unused = -1
  int32_t max_blocks_per_seq = 0;
  std::vector<int64_t> slot_mapping;    // [num_tokens] destination slot of each new K/V, -1 = skip
  std::vector<int32_t> logits_indices;  // [num_logits] flattened token indices to return logits for
  std::vector<EmbeddingOverride> embedding_overrides;  // optional, sorted, non-overlapping

  int num_seqs() const { return static_cast<int>(seq_lens.size()); }
  int num_tokens() const { return static_cast<int>(input_ids.size()); }
};

// Logits of the requested rows, fp32 on the host: data[row * vocab_size + token].
struct Logits {
  int32_t num_rows = 0;
  int32_t vocab_size = 0;
  std::vector<float> data;
  const float* row(int r) const { return data.data() + static_cast<int64_t>(r) * vocab_size; }
};

// Per-row sampling inputs for a runner that samples on its device (ModelRunner::ForwardAndSample):
// row r samples logits row r (batch.logits_indices[r]) exactly as engine::Sampler::Sample samples
// the same row on the host (src/engine/sampler.h): the same knobs, seed, RNG stream and step, and
// the host's per-row lists written out. Mirrors kernels/cuda/sampling.h (plain C++ here).
struct SamplingRowParams {
  float temperature = 1.0f;         // finite >= 0; 0 = greedy (first maximum)
  int32_t top_k = 0;                // >= -1; <= 0 or >= vocab = off
  float top_p = 1.0f;               // (0, 1]; 1 = off
  float min_p = 0.0f;               // [0, 1]; 0 = off
  float repetition_penalty = 1.0f;  // finite > 0; 1 = off
  float presence_penalty = 0.0f;    // [-2, 2]
  float frequency_penalty = 0.0f;   // [-2, 2]
  int32_t logprobs = -1;            // -1 = none; k in [0, 20]: the token's logprob + top k
  uint64_t seed = 0;                // the request's seed
  int32_t sample_index = 0;         // >= 0: RNG stream within the request
  int32_t generated = 0;            // >= 0: tokens generated so far (the RNG step)
};

// The three per-row lists are CSR: row r's entries are [offsets[r], offsets[r + 1]); an empty
// offsets vector means no entries for any row. Ids are in [0, vocab).
struct SamplingInputs {
  std::vector<SamplingRowParams> rows;  // [R], R = batch.logits_indices.size()
  // Masked to -inf (eos ids unless ignore_eos, then stop_token_ids) while generated < min_tokens;
  // the caller decides which rows get them.
  std::vector<int32_t> masked_offsets;  // [R + 1] or empty
  std::vector<int32_t> masked_ids;
  // logit_bias in the request's list order (a repeated id is added twice, in order).
  std::vector<int32_t> bias_offsets;  // [R + 1] or empty
  std::vector<int32_t> bias_ids;
  std::vector<float> bias_values;  // [bias_ids.size()]
  // The DISTINCT ids of prompt + generated tokens in first-occurrence order, each with its count
  // among the generated tokens (>= 0): all take the repetition penalty, those with a count > 0
  // presence/frequency. May be left out for a row whose three penalties are off.
  std::vector<int32_t> penalty_offsets;  // [R + 1] or empty
  std::vector<int32_t> penalty_ids;
  std::vector<int32_t> penalty_counts;  // [penalty_ids.size()]
  // Structured output: [R, ceil(vocab / 32)] words, or empty when no row is constrained; token i of
  // row r is allowed iff bit i % 32 of word r * ceil(vocab / 32) + i / 32 is set (unconstrained
  // rows: every bit set). Disallowed logits are -inf before every other step. A constrained row's
  // min_tokens is folded into its mask by the caller, so it gets no masked ids.
  std::vector<uint32_t> allowed_bitmask;
  // Nullable. When set, the words of allowed_bitmask (not its size) may still be being written
  // when ForwardAndSample is called: the runner calls this, after queueing the forward pass and
  // before it reads them, so the caller computes the masks while the forward pass runs.
  std::function<void()> await_bitmask;

  int num_rows() const { return static_cast<int>(rows.size()); }
  void Clear() {
    rows.clear();
    masked_offsets.clear();
    masked_ids.clear();
    bias_offsets.clear();
    bias_ids.clear();
    bias_values.clear();
    penalty_offsets.clear();
    penalty_ids.clear();
    penalty_counts.clear();
    allowed_bitmask.clear();
    await_bitmask = nullptr;
  }
};

// What a device sampler returns for each row, on the host.
struct SampledTokens {
  static constexpr int kMaxTopLogprobs = 20;  // = the server's kMaxLogprobs
  int32_t num_rows = 0;
  std::vector<int32_t> ids;         // [R] sampled token
  std::vector<float> logprobs;      // [R] its logprob (0 where the row's logprobs < 0)
  std::vector<int32_t> top_ids;     // [R, kMaxTopLogprobs]: the best min(logprobs, vocab), then -1
  std::vector<float> top_logprobs;  // [R, kMaxTopLogprobs]
};

}  // namespace muse::models
