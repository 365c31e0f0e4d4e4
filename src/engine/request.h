// What the API hands the engine (Request, SamplingParams) and what the engine streams back
// (RequestOutput). Plain C++: the server includes this without libtorch. See README.md.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "src/common/status.h"
#include "src/structured/matcher.h"

namespace muse::engine {

// Scheduling class. Lower value is served first; aging lets kBatch overtake old kInteractive work.
enum class Priority : int { kInteractive = 0, kBatch = 1 };

enum class FinishReason { kStop, kLength, kAbort, kDeadline, kError };
const char* FinishReasonName(
    FinishReason reason);  // "stop", "length", "abort", "deadline", "error"

// Thinking budget (issue #18) for models that reason in a block such as `<think> ... </think>`.
// Matched on token ids (no text decoder needed): the block opens when the output begins with
// start_token_ids (or at once with starts_inside: the prompt opened it) and closes when the model
// writes end_token_ids. Every token generated inside the block before its end tag is a reasoning
// token (a partial end tag the model abandons counts too). When `budget` reasoning tokens are
// reached and the block is still open, the next steps force end_token_ids and then
// forced_suffix_token_ids, one token per step, through the structured-output mask path (a mask
// allowing exactly that token); then generation goes on freely. The forced tokens and the end
// tag are completion tokens (they count toward max_tokens) but not reasoning tokens, so a forced
// close reports exactly `budget` reasoning tokens. An output that does not begin with the start
// tag has no block (all content, 0 reasoning tokens). budget = kUnlimited only follows the block
// (reasoning tokens counted, nothing forced), e.g. for stops_after_block.
struct ThinkingBudget {
  static constexpr int kUnlimited = std::numeric_limits<int>::max();
  int budget = 0;                        // reasoning tokens allowed in the block, >= 0
  bool starts_inside = false;            // the prompt opened the block: the output begins inside it
  std::vector<int32_t> start_token_ids;  // needed unless starts_inside
  std::vector<int32_t> end_token_ids;    // the end tag, non-empty
  std::vector<int32_t> forced_suffix_token_ids;  // forced after a forced end tag (e.g. "\n\n")
  // Stop strings apply to content only: the text of the block's tokens (start tag, reasoning, end
  // tag, forced suffix) bypasses the stop-string matcher; matching starts after the block. (The
  // server sets it when it parses the reasoning channel.) Stop token ids still apply everywhere.
  bool stops_after_block = false;
};

struct SamplingParams {
  int n = 1;                 // independent samples of the same prompt
  int max_tokens = 16;       // generated tokens per sample, >= 1
  int min_tokens = 0;        // EOS / stop token ids are masked until this many are generated
  float temperature = 1.0f;  // 0 = greedy
  int top_k = 0;             // 0 or -1 = off
  float top_p = 1.0f;        // (0, 1]
  float min_p = 0.0f;        // [0, 1]: drop tokens with p < min_p * p_max
  float repetition_penalty =
      1.0f;  // > 0; 1 = off (HF/vLLM: divide positive logits, multiply negative)
  float presence_penalty = 0.0f;   // [-2, 2], OpenAI semantics over generated tokens
  float frequency_penalty = 0.0f;  // [-2, 2]
  std::vector<std::pair<int32_t, float>> logit_bias;  // token id -> added to the logit
  std::optional<uint64_t> seed;  // set: reproducible regardless of batch composition
  int logprobs = -1;             // -1 = none; k >= 0: sampled token's logprob + top-k alternatives
  std::vector<int32_t> stop_token_ids;  // finish "stop" when generated (token kept in output)
  std::vector<std::string> stop;  // stop strings; need a TextDecoder (text removed from output)
  bool ignore_eos = false;
  // Structured output: only tokens the grammar allows are sampled (a bitmask applied as -inf
  // before everything else), EOS only where it may end. Compiled once per constraint and shared;
  // its vocabulary must have the model's vocab_size. The grammar wins where other knobs conflict:
  // min_tokens holds EOS / stop ids back only while the grammar allows another token, and a
  // complete grammar (EOS sampled, or nothing but EOS can follow) ends the sample with "stop" at
  // once (stop_reason "token:<eos>" or empty), even with ignore_eos or before min_tokens. A state
  // no token of the vocabulary can continue fails the sample ("error", InvalidArgument).
  std::shared_ptr<const structured::CompiledGrammar> grammar;
  // Thinking budget (see ThinkingBudget); not combinable with `grammar` (InvalidArgument).
  std::optional<ThinkingBudget> thinking;
};

// Non-text content spliced into the prompt (e.g. image features). Its digest enters the prefix
// cache key of every KV block the span overlaps, so two prompts with the same placeholder tokens
// but different images never share KV.
struct ContentSpan {
  int32_t offset = 0;      // first prompt token replaced
  int32_t num_tokens = 0;  // consecutive prompt tokens replaced
  uint64_t digest = 0;     // content hash (e.g. of the image bytes)
  // [num_tokens, hidden_size] fp32 rows; may be null if the runner embeds the tokens itself.
  std::shared_ptr<const std::vector<float>> embeddings;
};

struct Request {
  std::string id;  // unique among live requests
  std::vector<int32_t> prompt_token_ids;
  SamplingParams sampling;
  Priority priority = Priority::kInteractive;
  std::optional<absl::Time> deadline;              // reached -> finish reason "deadline"
  std::vector<ContentSpan> content;                // sorted, non-overlapping
  absl::Time arrival_time = absl::InfinitePast();  // set by AddRequest when left at InfinitePast
};

struct TopLogprob {
  int32_t token_id = 0;
  float logprob = 0.0f;
};

struct TokenLogprobs {
  float logprob = 0.0f;         // of the sampled token (after penalties/bias, before temperature)
  std::vector<TopLogprob> top;  // best `logprobs` alternatives, descending
};

// New output of one sample since the previous RequestOutput.
struct SampleDelta {
  int index = 0;                              // sample index in [0, n)
  std::vector<int32_t> token_ids;             // newly generated tokens
  std::vector<TokenLogprobs> logprobs;        // one per new token when logprobs >= 0
  std::string text;                           // newly stable text (only with a TextDecoder)
  std::optional<FinishReason> finish_reason;  // set on the sample's last delta
  std::string stop_reason;   // matched stop string, or "token:<id>" for EOS / stop token ids
  int reasoning_tokens = 0;  // with SamplingParams::thinking: the sample's reasoning tokens so far
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;      // prompt tokens served by the prefix cache at first admission
  int64_t completion_tokens = 0;  // over all samples
  int64_t reasoning_tokens = 0;   // over all samples, part of completion_tokens (ThinkingBudget)
};

struct Timings {
  absl::Duration queue = absl::ZeroDuration();  // arrival -> first scheduled
  absl::Duration ttft = absl::ZeroDuration();   // arrival -> first token
  absl::Duration tpot = absl::ZeroDuration();   // mean time per output token after the first
  absl::Duration e2e = absl::ZeroDuration();    // arrival -> finished
};

struct RequestOutput {
  std::string request_id;
  std::vector<SampleDelta> samples;  // only samples with news
  bool finished = false;             // last message of the stream
  absl::Status error;                // set with finish reason kError
  Usage usage;                       // running totals
  Timings timings;                   // final on the finished message
};

// Checks every field; errors name the field and the value, e.g.
// "temperature must be >= 0, got -1". vocab_size <= 0 skips token-id range checks.
absl::Status ValidateSamplingParams(const SamplingParams& params, int64_t vocab_size,
                                    bool have_text_decoder);

}  // namespace muse::engine
