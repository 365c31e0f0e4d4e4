#include "src/engine/request.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace muse::engine {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kDeadline:
      return "deadline";
    case FinishReason::kError:
      return "error";
  }
  return "unknown";
}

namespace {

absl::Status Bad(absl::string_view msg) { return absl::InvalidArgumentError(msg); }

absl::Status CheckTokenId(absl::string_view field, int32_t id, int64_t vocab_size) {
  if (id < 0 || (vocab_size > 0 && id >= vocab_size)) {
    return Bad(absl::StrCat(field, " token id must be in [0, ", vocab_size, "), got ", id));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateSamplingParams(const SamplingParams& p, int64_t vocab_size,
                                    bool have_text_decoder) {
  constexpr int kMaxN = 64;
  constexpr int kMaxLogprobs = 20;
  if (p.n < 1 || p.n > kMaxN) return Bad(absl::StrCat("n must be in [1, ", kMaxN, "], got ", p.n));
  if (p.max_tokens < 1) return Bad(absl::StrCat("max_tokens must be >= 1, got ", p.max_tokens));
  if (p.min_tokens < 0) return Bad(absl::StrCat("min_tokens must be >= 0, got ", p.min_tokens));
  if (p.min_tokens > p.max_tokens) {
    return Bad(
        absl::StrCat("min_tokens must be <= max_tokens (", p.max_tokens, "), got ", p.min_tokens));
  }
  if (!std::isfinite(p.temperature) || p.temperature < 0) {
    return Bad(absl::StrCat("temperature must be >= 0, got ", p.temperature));
  }
  if (p.top_k < -1) return Bad(absl::StrCat("top_k must be -1, 0 (off) or >= 1, got ", p.top_k));
  if (!(p.top_p > 0 && p.top_p <= 1)) {
    return Bad(absl::StrCat("top_p must be in (0, 1], got ", p.top_p));
  }
  if (!(p.min_p >= 0 && p.min_p <= 1)) {
    return Bad(absl::StrCat("min_p must be in [0, 1], got ", p.min_p));
  }
  if (!(p.repetition_penalty > 0) || !std::isfinite(p.repetition_penalty)) {
    return Bad(absl::StrCat("repetition_penalty must be > 0, got ", p.repetition_penalty));
  }
  if (!(p.presence_penalty >= -2 && p.presence_penalty <= 2)) {
    return Bad(absl::StrCat("presence_penalty must be in [-2, 2], got ", p.presence_penalty));
  }
  if (!(p.frequency_penalty >= -2 && p.frequency_penalty <= 2)) {
    return Bad(absl::StrCat("frequency_penalty must be in [-2, 2], got ", p.frequency_penalty));
  }
  for (const auto& [token, bias] : p.logit_bias) {
    RETURN_IF_ERROR(CheckTokenId("logit_bias", token, vocab_size));
    if (!(bias >= -100 && bias <= 100)) {
      return Bad(
          absl::StrCat("logit_bias for token ", token, " must be in [-100, 100], got ", bias));
    }
  }
  if (p.logprobs < -1 || p.logprobs > kMaxLogprobs) {
    return Bad(absl::StrCat("logprobs must be in [-1, ", kMaxLogprobs, "], got ", p.logprobs));
  }
  for (int32_t t : p.stop_token_ids) RETURN_IF_ERROR(CheckTokenId("stop_token_ids", t, vocab_size));
  for (const auto& s : p.stop) {
    if (s.empty()) return Bad("stop strings must be non-empty");
  }
  if (!p.stop.empty() && !have_text_decoder) {
    return Bad("stop strings need a text decoder; the engine was started without one");
  }
  if (p.grammar && vocab_size > 0 && p.grammar->vocab().vocab_size() != vocab_size) {
    return Bad(absl::StrCat("grammar was compiled for a vocabulary of ",
                            p.grammar->vocab().vocab_size(), " tokens, the model's vocab_size is ",
                            vocab_size));
  }
  if (p.thinking) {
    const ThinkingBudget& t = *p.thinking;
    if (t.budget < 0) return Bad(absl::StrCat("thinking.budget must be >= 0, got ", t.budget));
    if (t.end_token_ids.empty()) return Bad("thinking.end_token_ids must be non-empty");
    if (!t.starts_inside && t.start_token_ids.empty()) {
      return Bad("thinking.start_token_ids must be non-empty unless thinking.starts_inside");
    }
    for (int32_t id : t.start_token_ids) {
      RETURN_IF_ERROR(CheckTokenId("thinking.start_token_ids", id, vocab_size));
    }
    for (int32_t id : t.end_token_ids) {
      RETURN_IF_ERROR(CheckTokenId("thinking.end_token_ids", id, vocab_size));
    }
    for (int32_t id : t.forced_suffix_token_ids) {
      RETURN_IF_ERROR(CheckTokenId("thinking.forced_suffix_token_ids", id, vocab_size));
    }
    if (p.grammar) {
      return Bad(
          "thinking (a thinking budget) cannot be combined with grammar (structured output) in "
          "one request");
    }
  }
  return absl::OkStatus();
}

}  // namespace muse::engine
