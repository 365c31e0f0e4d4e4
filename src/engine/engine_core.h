// EngineCore: the single-threaded heart of the engine. Owns every RequestState / Sequence, the
// block manager, the scheduler and the sampler; runs one iteration per Step(): expire deadlines ->
// schedule -> build batch -> runner Forward -> publish full blocks to the prefix cache -> sample
// -> stop checks -> push outputs. With a runner that SamplesOnDevice(), Forward + sample are one
// ForwardAndSample (the same tokens, sampled where the logits are). Structured output: the token
// masks of constrained rows are computed on CPU threads while the forward pass runs
// (token_masks.h), each sample's GrammarMatcher advances by its sampled token, and a grammar that
// is complete ends the sample at once. Not thread-safe: Engine
// (engine.h) drives it from one thread. Unit tests drive it directly with a real runner for
// deterministic step-by-step checks.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "src/engine/block_manager.h"
#include "src/engine/output_stream.h"
#include "src/engine/request.h"
#include "src/engine/sampler.h"
#include "src/engine/scheduler.h"
#include "src/engine/sequence.h"
#include "src/engine/text_decoder.h"
#include "src/engine/token_masks.h"
#include "src/runtime/model_runner.h"

namespace muse::kernels::cpu {
class ThreadPool;
}  // namespace muse::kernels::cpu

namespace muse::engine {

struct EngineOptions {
  SchedulerConfig scheduler;
  int64_t max_model_len = 0;  // 0 = the model's max_position_embeddings (unbounded if 0 too)
  std::shared_ptr<TextDecoderFactory> text_decoder;  // optional; needed for stop strings / text
  uint64_t seed = 0;  // seeds of unseeded requests derive from it; 0 = from std::random_device
  // Threads that sample a step's rows (Sampler::SampleBatch); 0 = the CPUs this process may use
  // (the runner's CPU thread count is the natural setting), 1 = on the engine thread only.
  int sampling_threads = 0;
  // Called once, on the engine thread, when the runner reports it can never run a step again
  // (ModelRunner::Health(), e.g. a tensor-parallel worker died): every live request has been
  // failed with that UNAVAILABLE status and new ones are refused with it. The server stops.
  std::function<void(const absl::Status&)> on_runner_lost;
};

// Upper bounds (seconds) of the step-duration histogram buckets; one more bucket is +Inf.
inline constexpr std::array<double, 14> kStepSecondsBounds = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5};

struct EngineStats {
  int64_t num_requests = 0;         // live (queued or running)
  int64_t num_queued_requests = 0;  // never admitted yet
  int64_t num_running_seqs = 0;
  int64_t num_waiting_seqs = 0;  // queued + preempted
  int64_t kv_blocks_total = 0;
  int64_t kv_blocks_used = 0;    // referenced by a sequence
  int64_t kv_blocks_cached = 0;  // in the prefix cache (used or evictable)
  double kv_usage = 0.0;         // used / total
  int64_t prefix_cache_query_tokens = 0;
  int64_t prefix_cache_hit_tokens = 0;
  int64_t num_preemptions = 0;
  int64_t num_steps = 0;
  int64_t num_batched_tokens = 0;  // summed over steps
  int64_t num_generated_tokens = 0;
  int64_t requests_finished = 0;  // any reason
  int64_t requests_aborted = 0;
  int64_t requests_deadline = 0;
  int64_t requests_failed = 0;
  int64_t requests_rejected = 0;                    // by Engine::AddRequest (filled there)
  absl::Duration sum_queue = absl::ZeroDuration();  // over finished requests that got a token
  absl::Duration sum_ttft = absl::ZeroDuration();
  absl::Duration sum_tpot = absl::ZeroDuration();
  int64_t num_timed = 0;
  absl::Duration last_step = absl::ZeroDuration();  // engine-side time of the last Step()
  // Every Step() that ran a batch (num_steps of them), from schedule to the last output pushed
  // (the OutputStream hooks included): total time and a histogram (non-cumulative counts, bucket
  // i <= kStepSecondsBounds[i], the last one +Inf).
  absl::Duration sum_step = absl::ZeroDuration();
  std::array<int64_t, kStepSecondsBounds.size() + 1> step_buckets{};
  // Structured output: token masks computed (one per constrained logits row), their compute time
  // (per step, from the mask worker's start to its last job), and the engine thread's time spent
  // waiting for them after the forward pass -- the part the forward pass did not hide.
  int64_t num_token_masks = 0;
  absl::Duration sum_token_mask_compute = absl::ZeroDuration();
  absl::Duration sum_token_mask_wait = absl::ZeroDuration();
};

class EngineCore {
 public:
  // `runner` must outlive the core.
  static absl::StatusOr<std::unique_ptr<EngineCore>> Create(runtime::ModelRunner* runner,
                                                            const EngineOptions& options);
  ~EngineCore();

  // Field-by-field checks that depend only on immutable state (safe from any thread).
  absl::Status ValidateRequest(const Request& request) const;
  // Queues a request. Errors: ValidateRequest's, AlreadyExists (live id), ResourceExhausted
  // (more than max_waiting requests queued).
  absl::Status AddRequest(Request request, std::shared_ptr<OutputStream> stream);
  // Finishes a live request with "abort" and frees its blocks now; false if unknown.
  bool Abort(const std::string& request_id);
  // Finishes every live request with `reason`; a non-OK `error` goes on each final message (and
  // counts the requests as failed).
  void AbortAll(FinishReason reason, const absl::Status& error = absl::OkStatus());

  // One iteration. A runner failure (an error status or an exception out of Forward /
  // ForwardAndSample) fails only the batch's requests: finish reason "error", an INTERNAL status
  // naming the step, blocks freed in this step; Step still returns OK and the engine serves on.
  // The error is returned only for broken invariants.
  absl::Status Step();
  bool HasWork() const { return scheduler_.num_running() + scheduler_.num_waiting() > 0; }
  std::optional<absl::Time> NextDeadline() const;

  EngineStats Stats() const;
  // Block refcounts vs. sequence tables, free lists, cache map (see BlockManager).
  absl::Status CheckInvariants() const;
  // Ids finished since the last call.
  std::vector<std::string> TakeFinished();

  const BlockManager& blocks() const { return blocks_; }
  const Scheduler& scheduler() const { return scheduler_; }
  int64_t max_model_len() const { return max_model_len_; }

 private:
  struct RequestState;
  EngineCore(runtime::ModelRunner* runner, const EngineOptions& options, int num_blocks);

  void FinishRequest(RequestState* rs, FinishReason reason, const absl::Status& error);
  void ExpireDeadlines(absl::Time now);
  void PublishFullBlocks(Sequence* seq);
  // `allowed_bitmask`: the leader's structured-output mask (nullable), the same for every sample.
  void Fork(RequestState* rs, const float* logits, const uint32_t* allowed_bitmask, absl::Time now);
  // Creates samples 1..n-1 of a request whose first tokens are `results` (one per sample).
  void ForkWith(RequestState* rs, const std::vector<SampleResult>& results, absl::Time now);
  // Device sampling: turns this step's logits rows into sampling_inputs_ (what MakeRow gives the
  // host sampler, written out) and batch_.logits_indices into one row per sample drawn (an
  // unforked request with n > 1 gets its row n times, sample indices 0..n-1).
  void BuildSamplingInputs(const SchedulerOutput& plan);
  void AddSamplingRow(const RequestState& rs, const Sequence& seq, int sample_index);
  SampleResult SampledResult(int row, int logprobs) const;
  void AppendToken(RequestState* rs, int sample, const SampleResult& result, absl::Time now);
  void FinishSample(RequestState* rs, int sample, FinishReason reason, std::string stop_reason);
  // Finishes one sample with "error" and `error` (kept on the request's final message; the
  // request counts as failed once). Its siblings go on.
  void FailSample(RequestState* rs, int sample, const absl::Status& error);
  // Structured output: lists this step's constrained logits rows as mask jobs (host sampling: into
  // host_masks_; device: into sampling_inputs_.allowed_bitmask, which BuildSamplingInputs sized)
  // and starts them on the mask worker. The caller Wait()s after the forward pass.
  void StartTokenMasks(const SchedulerOutput& plan, bool on_device);
  // Waits for the masks StartTokenMasks started (no-op when done or none), counting the wait.
  void WaitTokenMasks();
  // The mask of logits row `r` for the host sampler (null: unconstrained).
  const uint32_t* HostMask(int r) const;
  // Logits row `r`'s mask allows no token, or its job failed (then the row is not sampled).
  bool DeadEnd(int r) const;
  // Whether logits row `r`'s mask job found no allowed token (or failed); if so, finishes its
  // samples (the whole request when not yet forked) with "error" and returns true.
  bool FailDeadEnd(int r, RequestState* rs, Sequence* seq);
  SamplingRow MakeRow(const RequestState& rs, const Sequence& seq, const float* logits) const;
  void FlushOutputs(absl::Time now);

  runtime::ModelRunner* runner_;
  EngineOptions options_;
  int64_t vocab_size_;
  int64_t max_model_len_;
  std::vector<int64_t> eos_token_ids_;
  BlockManager blocks_;
  Scheduler scheduler_;
  Sampler sampler_;
  std::unique_ptr<kernels::cpu::ThreadPool> sampling_pool_;  // null: sample on the engine thread
  uint64_t seed_base_;

  absl::flat_hash_map<std::string, std::unique_ptr<RequestState>> requests_;
  std::vector<RequestState*> dirty_;  // requests with output to push this step
  std::vector<std::string> finished_ids_;
  int64_t next_seq_id_ = 0;
  int64_t num_queued_ = 0;
  EngineStats counters_;

  models::Batch batch_;
  models::Logits logits_;
  std::vector<int> logits_seq_;
  std::vector<SamplingRow> sample_rows_;  // this step's rows of forked requests
  std::vector<SampleResult> sample_results_;
  // Device sampling (runner_->SamplesOnDevice()): this step's inputs and outputs.
  models::SamplingInputs sampling_inputs_;
  models::SampledTokens sampled_;
  std::vector<int32_t> penalty_slot_;  // [vocab] scratch: a token's index in its row's list, or -1
  std::vector<int32_t> row_indices_;   // scratch: BuildBatch's logits_indices
  // Structured output (issue #17): this step's mask jobs (one per constrained logits row) and each
  // logits row's job (-1: unconstrained); the host sampler's masks [jobs, bitmask_words_].
  int bitmask_words_;
  std::vector<TokenMaskJob> mask_jobs_;
  std::vector<int> row_mask_job_;
  std::vector<uint32_t> host_masks_;
  std::unique_ptr<TokenMaskWorker> mask_worker_;  // created by the first constrained step
  bool masks_pending_ = false;                    // started, not yet waited for
};

}  // namespace muse::engine
