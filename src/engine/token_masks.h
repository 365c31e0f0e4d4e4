// Structured output's per-step token masks (issue #17), computed on CPU threads WHILE the forward
// pass runs: the engine lists one job per constrained logits row, Start()s them before the
// runner's Forward / ForwardAndSample and Wait()s after it (the device runner waits earlier, just
// before it uploads the masks: SamplingInputs::await_bitmask). The matchers' states are final when
// the step starts (their tokens were accepted after the previous step's sampling), so nothing the
// jobs read changes while they run.
//
// Threads: one background thread (started on first use, so engines that never see a grammar have
// none) drives each step's jobs, alone or over the engine's sampling pool when there are several.
// The engine thread only calls Start and Wait; a job touches nothing but its own matcher (const)
// and its own words.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "src/engine/request.h"
#include "src/structured/matcher.h"

namespace muse::kernels::cpu {
class ThreadPool;
}  // namespace muse::kernels::cpu

namespace muse::engine {

struct TokenMaskJob {
  // The grammar's matcher, or null with forced_token >= 0.
  const structured::GrammarMatcher* matcher = nullptr;
  // >= 0: the mask allows exactly this token (a thinking budget forcing its end string, issue
  // #18); the matcher and min_tokens are then not consulted.
  int32_t forced_token = -1;
  uint32_t* words = nullptr;  // [copies, num_words]: the mask, then copies - 1 copies of it
  int num_words = 0;
  int copies = 1;
  // min_tokens folded into the mask: while generated < min_tokens the EOS ids (unless ignore_eos)
  // and stop_token_ids are cleared, except where that would leave no token (the grammar wins).
  const SamplingParams* params = nullptr;
  const std::vector<int64_t>* eos_token_ids = nullptr;
  int generated = 0;

  // Outputs.
  bool empty = false;  // no token allowed: the vocabulary cannot continue the grammar
  std::string error;   // non-empty: the matcher threw (the row's sample fails with it)
};

// Fills `job.words` (the mask, its copies) and `job.empty` / `job.error`; never throws.
void ComputeTokenMask(TokenMaskJob& job);

class TokenMaskWorker {
 public:
  // `pool` (nullable, not owned, outlives the worker): spreads a step's jobs when there are
  // several. It must not run anything else between Start and Wait.
  explicit TokenMaskWorker(kernels::cpu::ThreadPool* pool);
  ~TokenMaskWorker();
  TokenMaskWorker(const TokenMaskWorker&) = delete;
  TokenMaskWorker& operator=(const TokenMaskWorker&) = delete;

  // Starts every job of `jobs` (which must stay alive and unmoved until Wait returns); returns at
  // once. Not reentrant: Wait before the next Start.
  void Start(std::span<TokenMaskJob> jobs);
  // Returns when every job of the last Start is done (at once if none is pending).
  void Wait();
  // Wall time the last Start's jobs took on the worker (valid after Wait).
  absl::Duration last_batch_time() const { return last_batch_time_; }

 private:
  void Loop();

  kernels::cpu::ThreadPool* pool_;
  std::thread thread_;  // started by the first Start
  std::mutex mu_;
  std::condition_variable cv_;
  std::span<TokenMaskJob> jobs_;
  bool pending_ = false;                                   // jobs_ started and not done
  absl::Duration last_batch_time_ = absl::ZeroDuration();  // written under mu_
  bool stop_ = false;
};

}  // namespace muse::engine
