#include "src/engine/scheduler.h"

#include <gtest/gtest.h>

#include <memory>
#include <numeric>

namespace muse::engine {
namespace {

class SchedulerTest : public ::testing::Test {
 protected:
  void Init(int num_blocks, SchedulerConfig config) {
    blocks_ = std::make_unique<BlockManager>(num_blocks);
    sched_ = std::make_unique<Scheduler>(config, blocks_.get());
  }
  // A waiting sequence with `prompt` tokens and the given order key.
  Sequence* Add(int prompt, int64_t key, int token_base = 0, int seats = 1) {
    auto seq = std::make_unique<Sequence>();
    seq->id = static_cast<int64_t>(seqs_.size());
    seq->tokens.resize(prompt);
    std::iota(seq->tokens.begin(), seq->tokens.end(), token_base);
    seq->num_prompt_tokens = prompt;
    seq->priority_key = key;
    seq->seats = seats;
    sched_->AddWaiting(seq.get());
    seqs_.push_back(std::move(seq));
    return seqs_.back().get();
  }
  // What the engine does after Forward: advance KV, publish full blocks, append a token.
  void Complete(const SchedulerOutput& out, int32_t next_token = 7) {
    for (const auto& s : out.scheduled) {
      s.seq->num_computed_tokens += s.num_new_tokens;
      ExtendBlockHashes(s.seq->tokens, {}, &s.seq->block_hashes);
      const int full = s.seq->num_computed_tokens / kernels::kKvBlockSize;
      for (int b = s.seq->num_cached_blocks; b < full; ++b) {
        blocks_->Cache(s.seq->block_table[b],
                       MakeBlockKey(s.seq->tokens, b, b ? s.seq->block_hashes[b - 1] : 0, {}),
                       s.seq->block_hashes[b]);
      }
      s.seq->num_cached_blocks = std::max(s.seq->num_cached_blocks, full);
      if (s.seq->num_remaining() == 0) s.seq->tokens.push_back(next_token);
    }
  }
  void ExpectInvariants() {
    std::vector<const std::vector<int32_t>*> tables;
    for (auto& s : seqs_) tables.push_back(&s->block_table);
    auto st = blocks_->CheckInvariants(tables);
    EXPECT_TRUE(st.ok()) << st;
  }
  static int TokensOf(const SchedulerOutput& out, const Sequence* seq) {
    for (const auto& s : out.scheduled)
      if (s.seq == seq) return s.num_new_tokens;
    return 0;
  }

  std::unique_ptr<BlockManager> blocks_;
  std::unique_ptr<Scheduler> sched_;
  std::vector<std::unique_ptr<Sequence>> seqs_;
};

TEST(SchedulerPureTest, PriorityKeyAging) {
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  const absl::Duration aging = absl::Seconds(10);
  // Interactive first at equal arrival.
  EXPECT_LT(PriorityKey(Priority::kInteractive, t0, aging),
            PriorityKey(Priority::kBatch, t0, aging));
  // A batch request that has waited longer than the aging window beats a fresh interactive one.
  EXPECT_LT(PriorityKey(Priority::kBatch, t0, aging),
            PriorityKey(Priority::kInteractive, t0 + absl::Seconds(11), aging));
  EXPECT_GT(PriorityKey(Priority::kBatch, t0, aging),
            PriorityKey(Priority::kInteractive, t0 + absl::Seconds(9), aging));
}

TEST(SchedulerPureTest, ChunkSize) {
  EXPECT_EQ(ChunkSize(100, 30, 0), 30);
  EXPECT_EQ(ChunkSize(10, 30, 0), 10);
  EXPECT_EQ(ChunkSize(100, 30, 8), 8);
  EXPECT_EQ(ChunkSize(5, 0, 8), 0);
}

TEST(SchedulerPureTest, ConfigValidationNamesField) {
  SchedulerConfig c;
  c.max_num_batched_tokens = 0;
  auto st = ValidateSchedulerConfig(c);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("max_num_batched_tokens"), std::string::npos);
}

TEST_F(SchedulerTest, TokenBudgetAndChunkedPrefill) {
  Init(64, {.max_num_batched_tokens = 32, .max_num_seqs = 8});
  Sequence* a = Add(80, 1);
  auto out = sched_->Schedule();
  ASSERT_EQ(out.scheduled.size(), 1u);
  EXPECT_EQ(out.scheduled[0].num_new_tokens, 32);
  EXPECT_EQ(out.num_batched_tokens, 32);
  EXPECT_EQ(a->block_table.size(), 2u);
  Complete(out);
  out = sched_->Schedule();
  EXPECT_EQ(TokensOf(out, a), 32);
  Complete(out);
  out = sched_->Schedule();
  EXPECT_EQ(TokensOf(out, a), 16);  // the rest
  Complete(out);
  EXPECT_EQ(a->num_generated(), 1);
  out = sched_->Schedule();
  EXPECT_EQ(TokensOf(out, a), 1);  // now decoding
  ExpectInvariants();
}

TEST_F(SchedulerTest, DecodesFirstThenPrefillUnderRemainingBudget) {
  Init(64, {.max_num_batched_tokens = 20, .max_num_seqs = 8});
  Sequence* a = Add(10, 1);
  Sequence* b = Add(10, 2, 500);
  auto out = sched_->Schedule();
  EXPECT_EQ(TokensOf(out, a), 10);
  EXPECT_EQ(TokensOf(out, b), 10);
  Complete(out);
  // A long prompt arrives with an earlier key than both decodes: decodes still go first.
  Sequence* c = Add(100, 0, 900);
  out = sched_->Schedule();
  ASSERT_EQ(out.scheduled.size(), 3u);
  EXPECT_EQ(out.scheduled[0].seq, a);
  EXPECT_EQ(out.scheduled[1].seq, b);
  EXPECT_EQ(out.scheduled[2].seq, c);
  EXPECT_EQ(TokensOf(out, c), 18);
  EXPECT_EQ(out.num_batched_tokens, 20);
  Complete(out);
  // Next step: two decodes + a continuing chunk of c (a running partial prefill).
  out = sched_->Schedule();
  EXPECT_EQ(TokensOf(out, a), 1);
  EXPECT_EQ(TokensOf(out, b), 1);
  EXPECT_EQ(TokensOf(out, c), 18);
  ExpectInvariants();
}

TEST_F(SchedulerTest, LongPrefillThresholdLetsSeveralPromptsProgress) {
  Init(64, {.max_num_batched_tokens = 64, .max_num_seqs = 8, .long_prefill_token_threshold = 16});
  Sequence* a = Add(100, 1);
  Sequence* b = Add(100, 2, 300);
  auto out = sched_->Schedule();
  EXPECT_EQ(TokensOf(out, a), 16);
  EXPECT_EQ(TokensOf(out, b), 16);
}

TEST_F(SchedulerTest, MaxNumSeqsAndSeats) {
  Init(64, {.max_num_batched_tokens = 1000, .max_num_seqs = 3});
  Add(5, 1, 0, /*seats=*/2);
  Sequence* b = Add(5, 2, 100, /*seats=*/2);
  Sequence* c = Add(5, 3, 200);
  auto out = sched_->Schedule();
  EXPECT_EQ(out.scheduled.size(), 1u);  // b needs 2 seats, only 1 left; c may not overtake b
  EXPECT_EQ(sched_->num_waiting(), 2);
  EXPECT_EQ(TokensOf(out, b), 0);
  EXPECT_EQ(TokensOf(out, c), 0);
}

TEST_F(SchedulerTest, PriorityOrderOfAdmission) {
  Init(64, {.max_num_batched_tokens = 10, .max_num_seqs = 8});
  Sequence* late_batch = Add(10, 50);
  Sequence* interactive = Add(10, 20, 100);
  auto out = sched_->Schedule();
  ASSERT_EQ(out.scheduled.size(), 1u);
  EXPECT_EQ(out.scheduled[0].seq, interactive);
  Complete(out);
  out = sched_->Schedule();
  EXPECT_EQ(TokensOf(out, interactive), 1);
  EXPECT_EQ(TokensOf(out, late_batch), 9);
}

TEST_F(SchedulerTest, AgingPreventsStarvation) {
  const absl::Duration aging = absl::Seconds(10);
  Init(64, {.max_num_batched_tokens = 10, .max_num_seqs = 8, .aging = aging});
  const absl::Time t0 = absl::FromUnixSeconds(5000);
  Sequence* old_batch = Add(10, PriorityKey(Priority::kBatch, t0, aging));
  Sequence* new_inter =
      Add(10, PriorityKey(Priority::kInteractive, t0 + absl::Seconds(30), aging), 100);
  auto out = sched_->Schedule();
  ASSERT_EQ(out.scheduled.size(), 1u);
  EXPECT_EQ(out.scheduled[0].seq, old_batch);
  EXPECT_EQ(TokensOf(out, new_inter), 0);
}

TEST_F(SchedulerTest, PrefixHitSkipsCachedBlocksAndKeepsOneToken) {
  Init(64, {.max_num_batched_tokens = 1000, .max_num_seqs = 8});
  Sequence* a = Add(48, 1);  // exactly 3 blocks
  auto out = sched_->Schedule();
  Complete(out);
  EXPECT_EQ(sched_->counters().prefix_hit_tokens, 0);
  Sequence* b = Add(48, 2);  // same tokens
  out = sched_->Schedule();
  // 2 blocks shared (the last full block is recomputed so the step has a token to run).
  EXPECT_EQ(TokensOf(out, b), 16);
  EXPECT_EQ(sched_->counters().prefix_hit_tokens, 32);
  EXPECT_EQ(sched_->counters().prefix_query_tokens, 96);
  EXPECT_EQ(b->block_table[0], a->block_table[0]);
  EXPECT_EQ(b->block_table[1], a->block_table[1]);
  EXPECT_NE(b->block_table[2], a->block_table[2]);
  EXPECT_EQ(blocks_->ref_count(a->block_table[0]), 2);
  ExpectInvariants();
  // Finishing a leaves the blocks to b; finishing b leaves them cached and free.
  sched_->Remove(a);
  ExpectInvariants();
  sched_->Remove(b);
  ExpectInvariants();
  EXPECT_EQ(blocks_->num_used_blocks(), 0);
  EXPECT_GE(blocks_->num_cached_blocks(), 3);
}

TEST_F(SchedulerTest, PreemptsLowestPriorityLatestArrivalFirst) {
  // 6 blocks. Three 32-token prompts fill them exactly; each first decode needs a third block.
  Init(6, {.max_num_batched_tokens = 1000, .max_num_seqs = 8, .enable_prefix_caching = false});
  Sequence* a = Add(32, 1);
  Sequence* b = Add(32, 3, 100);
  Sequence* c = Add(32, 2, 200);
  auto out = sched_->Schedule();
  ASSERT_EQ(out.scheduled.size(), 3u);
  Complete(out);
  EXPECT_EQ(blocks_->num_free_blocks(), 0);
  out = sched_->Schedule();
  // a (key 1) needs a block: the victim is b (largest key 3); then c (key 2) needs one and b's
  // freed blocks serve it.
  ASSERT_EQ(out.preempted.size(), 1u);
  EXPECT_EQ(out.preempted[0], b);
  EXPECT_EQ(b->status, SeqStatus::kWaiting);
  EXPECT_TRUE(b->block_table.empty());
  EXPECT_EQ(b->num_computed_tokens, 0);
  EXPECT_EQ(b->tokens.size(), 33u);  // the generated token is kept for the recompute
  EXPECT_EQ(TokensOf(out, a), 1);
  EXPECT_EQ(TokensOf(out, c), 1);
  EXPECT_EQ(TokensOf(out, b), 0);
  EXPECT_EQ(sched_->counters().num_preemptions, 1);
  ExpectInvariants();
  // b comes back (recomputing 33 tokens) once there is room.
  Complete(out);
  sched_->Remove(a);
  out = sched_->Schedule();
  EXPECT_EQ(TokensOf(out, b), 33);
  ExpectInvariants();
}

TEST_F(SchedulerTest, PreemptsItselfWhenLowest) {
  Init(5, {.max_num_batched_tokens = 1000, .max_num_seqs = 8, .enable_prefix_caching = false});
  Sequence* a = Add(40, 1);       // 3 blocks; its decode fits in them
  Sequence* b = Add(32, 2, 100);  // 2 blocks; its decode needs a third
  Complete(sched_->Schedule());
  EXPECT_EQ(blocks_->num_free_blocks(), 0);
  auto out = sched_->Schedule();
  ASSERT_EQ(out.preempted.size(), 1u);
  EXPECT_EQ(out.preempted[0], b);
  EXPECT_EQ(TokensOf(out, a), 1);
  EXPECT_EQ(TokensOf(out, b), 0);
  ExpectInvariants();
}

TEST_F(SchedulerTest, PrefillContinuationCanPreemptScheduledLaterDecode) {
  Init(4, {.max_num_batched_tokens = 16, .max_num_seqs = 8, .enable_prefix_caching = false});
  Sequence* d = Add(16, 5);
  Complete(sched_->Schedule());    // d: 1 block, decoding next
  Sequence* a = Add(64, 1, 1000);  // earlier key, long prompt
  auto out = sched_->Schedule();
  EXPECT_EQ(TokensOf(out, d), 1);  // d's 2nd block
  EXPECT_EQ(TokensOf(out, a), 15);
  Complete(out);
  out = sched_->Schedule();  // a's 2nd block: pool now full
  EXPECT_EQ(TokensOf(out, d), 1);
  EXPECT_EQ(TokensOf(out, a), 15);
  Complete(out);
  EXPECT_EQ(blocks_->num_free_blocks(), 0);
  out = sched_->Schedule();
  // d's decode was scheduled first, then a's chunk needed a block: d (later key) is preempted
  // and its token refunded.
  ASSERT_EQ(out.preempted.size(), 1u);
  EXPECT_EQ(out.preempted[0], d);
  EXPECT_EQ(TokensOf(out, d), 0);
  EXPECT_EQ(TokensOf(out, a), 15);
  EXPECT_EQ(out.num_batched_tokens, 15);
  ExpectInvariants();
}

TEST_F(SchedulerTest, RemoveFromEveryStateFreesBlocks) {
  Init(16, {.max_num_batched_tokens = 20, .max_num_seqs = 8});
  Sequence* waiting = Add(50, 9, 0);
  Sequence* prefilling = Add(50, 1, 100);
  Sequence* decoding = Add(5, 0, 200);
  auto out = sched_->Schedule();
  Complete(out);
  EXPECT_EQ(decoding->status, SeqStatus::kRunning);
  EXPECT_EQ(prefilling->status, SeqStatus::kRunning);
  EXPECT_EQ(waiting->status, SeqStatus::kWaiting);
  sched_->Remove(waiting);
  sched_->Remove(prefilling);
  sched_->Remove(decoding);
  EXPECT_EQ(blocks_->num_used_blocks(), 0);
  EXPECT_EQ(sched_->num_running() + sched_->num_waiting(), 0);
  ExpectInvariants();
}

}  // namespace
}  // namespace muse::engine
