#include "src/server/output_accumulator.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace muse::server {

v1::FinishReason ToProto(engine::FinishReason r) {
  switch (r) {
    case engine::FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case engine::FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    default:
      return v1::FINISH_REASON_ABORT;
  }
}

namespace {

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

}  // namespace

OutputAccumulator::OutputAccumulator(const ServedModel& model, const Admission& a,
                                     bool drop_stop_token_text)
    : drop_stop_token_text_(drop_stop_token_text) {
  if (!a.built.skip_special_tokens) {
    tokenizer_ = model.tokenizer.get();
    prompt_ = a.prompt_ids;
  }
}

bool OutputAccumulator::Add(const engine::RequestOutput& out,
                            std::map<int, v1::SampleDelta>* samples) {
  for (const engine::SampleDelta& d : out.samples) {
    v1::SampleDelta& s = (*samples)[d.index];
    s.set_index(d.index);
    s.set_reasoning_tokens(d.reasoning_tokens);  // a running total: the latest wins
    // The stop token (stop_reason "token:<id>") is the sample's last token.
    const bool drop_last = drop_stop_token_text_ && d.finish_reason.has_value() &&
                           absl::StartsWith(d.stop_reason, "token:");
    for (size_t i = 0; i < d.token_ids.size(); ++i) {
      s.add_token_ids(d.token_ids[i]);
      if (drop_last && i + 1 == d.token_ids.size()) continue;
      if (tokenizer_) s.mutable_text()->append(Detok(d.index).Step(d.token_ids[i]).value_or(""));
    }
    if (!tokenizer_) s.mutable_text()->append(d.text);
    for (const auto& lp : d.logprobs) {
      v1::TokenLogprob* p = s.add_logprobs();
      p->set_logprob(lp.logprob);
      for (const auto& t : lp.top) {
        v1::TopLogprob* tp = p->add_top();
        tp->set_token_id(t.token_id);
        tp->set_logprob(t.logprob);
      }
    }
    // Logprob entries line up with the new tokens.
    const int base = s.logprobs_size() - static_cast<int>(d.logprobs.size());
    for (size_t i = 0; i < d.logprobs.size(); ++i) {
      s.mutable_logprobs(base + static_cast<int>(i))->set_token_id(d.token_ids[i]);
    }
    if (d.finish_reason) {
      if (tokenizer_) s.mutable_text()->append(Detok(d.index).Flush().value_or(""));
      s.set_finish_reason(ToProto(*d.finish_reason));
      s.set_stop_reason(d.stop_reason);
      last_reason_ = engine::FinishReasonName(*d.finish_reason);
    }
  }
  usage_ = out.usage;
  if (out.finished) {
    timings_ = out.timings;
    error_ = out.error;
  }
  return out.finished;
}

void OutputAccumulator::FillUsage(v1::Usage* u, v1::Timings* t) const {
  u->set_prompt_tokens(usage_.prompt_tokens);
  u->set_cached_tokens(usage_.cached_tokens);
  u->set_completion_tokens(usage_.completion_tokens);
  u->set_reasoning_tokens(usage_.reasoning_tokens);
  t->set_queue_ms(Ms(timings_.queue));
  t->set_ttft_ms(Ms(timings_.ttft));
  t->set_tpot_ms(Ms(timings_.tpot));
  t->set_total_ms(Ms(timings_.e2e));
}

tokenizer::IncrementalDetokenizer& OutputAccumulator::Detok(int index) {
  auto it = detok_.find(index);
  if (it == detok_.end()) {
    it = detok_
             .emplace(index, std::make_unique<tokenizer::IncrementalDetokenizer>(
                                 *tokenizer_, prompt_, /*skip_special_tokens=*/false))
             .first;
  }
  return *it->second;
}

// Status of a finished generation: engine error, deadline, shutdown abort, or OK.
absl::Status FinalStatus(const OutputAccumulator& acc, bool client_cancelled) {
  if (client_cancelled) return absl::CancelledError("cancelled by the client");
  if (!acc.error().ok()) {
    switch (acc.error().code()) {
      case absl::StatusCode::kUnavailable:
      case absl::StatusCode::kResourceExhausted:  // lost the queue-full race inside the engine
      case absl::StatusCode::kInvalidArgument:
        return acc.error();
      default:
        break;
    }
    return absl::InternalError(absl::StrCat("generation failed: ", acc.error().message()));
  }
  if (acc.last_reason() == "deadline") return absl::DeadlineExceededError("deadline exceeded");
  if (acc.last_reason() == "abort")
    return absl::UnavailableError("server shut down before the request finished");
  return absl::OkStatus();
}

}  // namespace muse::server
