#include "src/engine/scheduler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace muse::engine {
namespace {

const std::vector<ContentSpan>& ContentOf(const Sequence* seq) {
  static const std::vector<ContentSpan> kNone;
  return seq->content ? *seq->content : kNone;
}

}  // namespace

absl::Status ValidateSchedulerConfig(const SchedulerConfig& c) {
  if (c.max_num_batched_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_num_batched_tokens must be >= 1, got ", c.max_num_batched_tokens));
  }
  if (c.max_num_seqs < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_num_seqs must be >= 1, got ", c.max_num_seqs));
  }
  if (c.max_waiting < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_waiting must be >= 0, got ", c.max_waiting));
  }
  if (c.aging < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("aging must be >= 0, got ", absl::FormatDuration(c.aging)));
  }
  if (c.long_prefill_token_threshold < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "long_prefill_token_threshold must be >= 0, got ", c.long_prefill_token_threshold));
  }
  return absl::OkStatus();
}

int64_t PriorityKey(Priority priority, absl::Time arrival, absl::Duration aging) {
  return absl::ToUnixNanos(arrival) +
         static_cast<int64_t>(priority) * absl::ToInt64Nanoseconds(aging);
}

int ChunkSize(int remaining, int budget, int threshold) {
  int n = std::min(remaining, budget);
  if (threshold > 0) n = std::min(n, threshold);
  return std::max(n, 0);
}

Scheduler::Scheduler(const SchedulerConfig& config, BlockManager* blocks)
    : config_(config), blocks_(blocks) {}

void Scheduler::AddWaiting(Sequence* seq) {
  seq->status = SeqStatus::kWaiting;
  waiting_.insert(seq);
}

void Scheduler::AddRunning(Sequence* seq) {
  seq->status = SeqStatus::kRunning;
  running_.insert(seq);
}

void Scheduler::Remove(Sequence* seq) {
  if (seq->status == SeqStatus::kRunning) running_.erase(seq);
  if (seq->status == SeqStatus::kWaiting) waiting_.erase(seq);
  blocks_->FreeTable(&seq->block_table);
  seq->num_computed_tokens = 0;
  seq->num_cached_blocks = 0;
  seq->status = SeqStatus::kFinished;
}

void Scheduler::Preempt(Sequence* victim, SchedulerOutput* out, int* budget) {
  auto it = std::find_if(out->scheduled.begin(), out->scheduled.end(),
                         [&](const ScheduledSeq& s) { return s.seq == victim; });
  if (it != out->scheduled.end()) {
    *budget += it->num_new_tokens;
    out->num_batched_tokens -= it->num_new_tokens;
    out->scheduled.erase(it);
  }
  running_.erase(victim);
  blocks_->FreeTable(&victim->block_table);
  victim->num_computed_tokens = 0;
  victim->num_cached_blocks = 0;
  ++victim->num_preemptions;
  victim->status = SeqStatus::kWaiting;
  waiting_.insert(victim);
  out->preempted.push_back(victim);
  ++counters_.num_preemptions;
}

bool Scheduler::GrowOrPreempt(Sequence* seq, int64_t num_tokens, SchedulerOutput* out,
                              int* budget) {
  while (!blocks_->GrowTable(&seq->block_table, num_tokens)) {
    Sequence* victim = *running_.rbegin();  // lowest priority, latest arrival
    Preempt(victim, out, budget);
    if (victim == seq) return false;
  }
  return true;
}

int Scheduler::MatchPrefix(Sequence* seq) {
  if (!blocks_->prefix_caching()) return 0;
  const auto& content = ContentOf(seq);
  ExtendBlockHashes(seq->tokens, content, &seq->block_hashes);
  // Leave at least one token to compute: its logits are what the step is for.
  const int max_blocks = static_cast<int>((seq->tokens.size() - 1) / kernels::kKvBlockSize);
  for (int b = 0; b < max_blocks; ++b) {
    const uint64_t parent = b == 0 ? 0 : seq->block_hashes[b - 1];
    auto hit = blocks_->Lookup(MakeBlockKey(seq->tokens, b, parent, content), seq->block_hashes[b]);
    if (!hit) break;
    blocks_->Acquire(*hit);
    seq->block_table.push_back(*hit);
  }
  seq->num_cached_blocks = static_cast<int>(seq->block_table.size());
  seq->num_computed_tokens = seq->num_cached_blocks * kernels::kKvBlockSize;
  return seq->num_computed_tokens;
}

void Scheduler::ScheduleDecodes(SchedulerOutput* out, int* budget) {
  const std::vector<Sequence*> order(running_.begin(), running_.end());
  for (Sequence* seq : order) {
    if (*budget <= 0) break;
    if (seq->status != SeqStatus::kRunning || seq->num_remaining() != 1) continue;
    if (!GrowOrPreempt(seq, seq->num_computed_tokens + 1, out, budget)) continue;
    out->scheduled.push_back({seq, 1});
    out->num_batched_tokens += 1;
    *budget -= 1;
  }
}

void Scheduler::SchedulePrefills(SchedulerOutput* out, int* budget) {
  const std::vector<Sequence*> order(running_.begin(), running_.end());
  for (Sequence* seq : order) {
    if (*budget <= 0) break;
    if (seq->status != SeqStatus::kRunning || seq->num_remaining() <= 1) continue;
    const int chunk =
        ChunkSize(seq->num_remaining(), *budget, config_.long_prefill_token_threshold);
    if (!GrowOrPreempt(seq, seq->num_computed_tokens + chunk, out, budget)) continue;
    out->scheduled.push_back({seq, chunk});
    out->num_batched_tokens += chunk;
    *budget -= chunk;
  }
}

void Scheduler::AdmitWaiting(SchedulerOutput* out, int* budget) {
  int seats = 0;
  for (const Sequence* s : running_) seats += s->seats;
  while (!waiting_.empty() && *budget > 0) {
    Sequence* seq = *waiting_.begin();
    if (seats + seq->seats > config_.max_num_seqs) break;
    const int hit = MatchPrefix(seq);
    const int chunk =
        ChunkSize(seq->num_remaining(), *budget, config_.long_prefill_token_threshold);
    if (!blocks_->GrowTable(&seq->block_table, seq->num_computed_tokens + chunk)) {
      blocks_->FreeTable(&seq->block_table);  // hand the matched prefix back
      seq->num_computed_tokens = 0;
      seq->num_cached_blocks = 0;
      break;  // strict head of line: smaller requests do not overtake a big one forever
    }
    counters_.prefix_query_tokens += static_cast<int64_t>(seq->tokens.size());
    counters_.prefix_hit_tokens += hit;
    waiting_.erase(waiting_.begin());
    seq->status = SeqStatus::kRunning;
    running_.insert(seq);
    seats += seq->seats;
    out->admitted.push_back(seq);
    out->scheduled.push_back({seq, chunk});
    out->num_batched_tokens += chunk;
    *budget -= chunk;
  }
}

SchedulerOutput Scheduler::Schedule() {
  SchedulerOutput out;
  int budget = config_.max_num_batched_tokens;
  ScheduleDecodes(&out, &budget);
  SchedulePrefills(&out, &budget);
  AdmitWaiting(&out, &budget);
  return out;
}

}  // namespace muse::engine
