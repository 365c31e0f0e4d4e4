// The soak harness's client: closed-loop dispatch of the seeded requests (soak_plan.h) over a few
// channels, bursts fired at once, and each request's fate carried out -- callback-API streams
// (ClientReadReactor) and unary calls, cancels from the reactor (after the first / k-th token) or
// from one timer thread (at start + delay), deadlines on the ClientContext, slow readers that hold
// their stream (AddHold, no read) until a timer cancels or drains it. Records what the client saw.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "benchmarks/bench/soak_plan.h"

namespace muse::bench {

struct SoakConfig;

// What the client saw of one request. Written by that request's callbacks only; read after the
// phase is over.
struct SoakOutcome {
  Fate fate = Fate::kComplete;
  SoakInput input = SoakInput::kPrompt;
  bool unary = false;
  bool http = false;
  int n = 1;
  std::atomic<int> terminal{0};  // OnDone / unary callbacks seen: must end at exactly 1
  bool cancel_sent = false;      // before the terminal status
  int code = -1;
  std::string error;
  int64_t tokens = 0;
  int finished_messages = 0;
  bool message_after_finished = false;
  int samples_finished = 0;  // samples with a finish reason (stream deltas / unary completions)
};

struct SoakPhase {
  std::shared_ptr<SoakOutcome[]> outcomes;  // by request index within the phase
  int64_t count = 0;
  double wall_s = 0;
  bool stalled = false;  // no call ended for stall_timeout_s; the open ones have terminal 0
};

class SoakClient {
 public:
  SoakClient(const SoakConfig& config, bool supports_images);
  ~SoakClient();
  absl::Status Connect();
  // Requests [first, first + count) of the seeded sequence with `bursts` evenly inside; returns
  // when every call has ended.
  SoakPhase Run(int64_t first, int64_t count, int64_t bursts, const char* label);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace muse::bench
