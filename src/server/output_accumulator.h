// Engine output -> per-sample deltas, shared by both faces. Each pump drains what a request's
// OutputStream holds and merges it into one v1::SampleDelta per sample (token ids, text, logprobs,
// finish reason), keeping the running usage and the final timings / error. With
// skip_special_tokens = false the text is re-decoded server-side from the token ids (the engine's
// decoder drops special tokens). Not thread-safe: one owner (a reactor under its mutex, or an
// HTTP stream on its strand).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "muse/v1/inference.pb.h"
#include "src/engine/request.h"
#include "src/server/service_context.h"
#include "src/tokenizer/incremental_detokenizer.h"

namespace muse::server {

v1::FinishReason ToProto(engine::FinishReason r);

class OutputAccumulator {
 public:
  // `drop_stop_token_text`: with skip_special_tokens false, leave out the text of the stop token
  // that ends a sample (the chat parsers keep special tokens but not the final <|eot_id|>).
  OutputAccumulator(const ServedModel& model, const Admission& a,
                    bool drop_stop_token_text = false);

  // Merges `out` into `samples` (by sample index). Returns true when `out` is the final message.
  bool Add(const engine::RequestOutput& out, std::map<int, v1::SampleDelta>* samples);
  void FillUsage(v1::Usage* u, v1::Timings* t) const;

  const engine::Usage& usage() const { return usage_; }
  const engine::Timings& timings() const { return timings_; }
  const absl::Status& error() const { return error_; }
  // Engine finish reason name of the last finished sample ("stop", "length", "abort", ...).
  const std::string& last_reason() const { return last_reason_; }

 private:
  tokenizer::IncrementalDetokenizer& Detok(int index);

  const tokenizer::Tokenizer* tokenizer_ = nullptr;
  bool drop_stop_token_text_ = false;
  std::vector<int32_t> prompt_;
  std::map<int, std::unique_ptr<tokenizer::IncrementalDetokenizer>> detok_;
  engine::Usage usage_;
  engine::Timings timings_;
  absl::Status error_;
  std::string last_reason_ = "abort";
};

// Status of a finished generation: client cancel, engine error, deadline, shutdown abort, or OK.
absl::Status FinalStatus(const OutputAccumulator& acc, bool client_cancelled);

}  // namespace muse::server
