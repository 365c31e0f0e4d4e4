// Iteration-level scheduler: which sequences run this step and how many new tokens each computes.
// Three small steps, in order, under one token budget (max_num_batched_tokens):
//   1. ScheduleDecodes   running sequences with one pending token, in priority order. A decode
//                        that needs a block and finds none preempts the lowest-priority,
//                        latest-arrival running sequence (possibly itself), recompute mode.
//   2. SchedulePrefills  running sequences with a partial prefill (chunked), same preemption rule.
//   3. AdmitWaiting      waiting sequences in priority order (strict head of line): prefix-cache
//                        match, then a chunk of the rest under the remaining budget and
//                        max_num_seqs. Admission never preempts.
// Pure bookkeeping over Sequence + BlockManager; no model, no clock. Engine thread only.
#pragma once

#include <cstdint>
#include <set>
#include <vector>

#include "absl/time/time.h"
#include "src/engine/block_manager.h"
#include "src/engine/sequence.h"

namespace muse::engine {

struct SchedulerConfig {
  int max_num_batched_tokens = 2048;  // token budget per step (decodes + prefill chunks)
  int max_num_seqs = 256;             // sequences holding KV at once
  int max_waiting = 1024;             // queued requests beyond this are rejected (engine)
  // A kBatch request ranks with kInteractive requests that arrived this much later.
  absl::Duration aging = absl::Seconds(10);
  // Per-sequence cap on a prefill chunk (0 = budget only), so several prompts progress at once.
  int long_prefill_token_threshold = 0;
  bool enable_prefix_caching = true;
};

absl::Status ValidateSchedulerConfig(const SchedulerConfig& config);

// The static ordering key: earlier arrival first, each lower class shifted back by `aging`.
int64_t PriorityKey(Priority priority, absl::Time arrival, absl::Duration aging);
// New tokens one sequence gets: min(remaining, budget, threshold if > 0).
int ChunkSize(int remaining, int budget, int threshold);

struct ScheduledSeq {
  Sequence* seq = nullptr;
  int num_new_tokens = 0;
};

struct SchedulerOutput {
  std::vector<ScheduledSeq> scheduled;  // decodes first, then prefill chunks
  std::vector<Sequence*> preempted;     // moved back to waiting this step (blocks freed)
  std::vector<Sequence*> admitted;      // waiting -> running this step
  int num_batched_tokens = 0;
};

struct SchedulerCounters {
  int64_t num_preemptions = 0;
  int64_t prefix_query_tokens = 0;  // tokens looked up at admission
  int64_t prefix_hit_tokens = 0;    // of those, served from the cache
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, BlockManager* blocks);

  // A new or re-queued sequence with no blocks.
  void AddWaiting(Sequence* seq);
  // A sequence that already holds blocks (a forked sample sharing its leader's prompt blocks).
  void AddRunning(Sequence* seq);
  // Finish/abort: drops the sequence from whichever queue holds it and releases its blocks.
  void Remove(Sequence* seq);

  SchedulerOutput Schedule();

  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  int num_running() const { return static_cast<int>(running_.size()); }
  const std::set<Sequence*, SeqOrder>& waiting() const { return waiting_; }
  const std::set<Sequence*, SeqOrder>& running() const { return running_; }
  const SchedulerCounters& counters() const { return counters_; }
  const SchedulerConfig& config() const { return config_; }
  BlockManager* blocks() const { return blocks_; }

 private:
  // Ensures seq's table covers num_tokens, preempting from the back of running_ as needed.
  // Returns false if seq itself was preempted.
  bool GrowOrPreempt(Sequence* seq, int64_t num_tokens, SchedulerOutput* out, int* budget);
  void Preempt(Sequence* victim, SchedulerOutput* out, int* budget);
  // Shares the longest cached prefix of seq's tokens (leaving >= 1 token to compute).
  int MatchPrefix(Sequence* seq);

  void ScheduleDecodes(SchedulerOutput* out, int* budget);
  void SchedulePrefills(SchedulerOutput* out, int* budget);
  void AdmitWaiting(SchedulerOutput* out, int* budget);

  SchedulerConfig config_;
  BlockManager* blocks_;
  std::set<Sequence*, SeqOrder> waiting_;
  std::set<Sequence*, SeqOrder> running_;
  std::vector<int> scheduled_index_;  // scratch
  SchedulerCounters counters_;
};

}  // namespace muse::engine
