#include <gtest/gtest.h>

#include <thread>

#include "src/engine/batch_builder.h"
#include "src/engine/output_stream.h"
#include "src/engine/text_decoder.h"

namespace muse::engine {
namespace {

TEST(StopStringMatcherTest, HoldsBackPossiblePrefixAndCutsAtMatch) {
  StopStringMatcher m({"###", "END"});
  auto r = m.Append("hello #");
  EXPECT_EQ(r.text, "hello ");  // "#" may start "###"
  EXPECT_FALSE(r.stopped);
  r = m.Append("# x");
  EXPECT_EQ(r.text, "## x");  // "## " can no longer become "###"
  r = m.Append(" E");
  EXPECT_EQ(r.text, " ");
  r = m.Append("N");
  EXPECT_EQ(r.text, "");
  r = m.Append("Dtail");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "");
  EXPECT_EQ(r.matched, "END");
}

TEST(StopStringMatcherTest, EarliestMatchWinsAndFlush) {
  StopStringMatcher m({"bc", "ab"});
  auto r = m.Append("xabc");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "x");
  EXPECT_EQ(r.matched, "ab");
  StopStringMatcher m2({"zzz"});
  EXPECT_EQ(m2.Append("abz").text, "ab");
  EXPECT_EQ(m2.Flush(), "z");
  StopStringMatcher none({});
  EXPECT_EQ(none.Append("anything").text, "anything");
}

TEST(OutputStreamTest, BlockingNextNotifyAndClose) {
  OutputStream s("r1");
  int notified = 0;
  s.SetNotify([&] { ++notified; });
  EXPECT_FALSE(s.TryNext().has_value());
  std::thread producer([&] {
    RequestOutput a;
    a.request_id = "r1";
    s.Push(a);
    RequestOutput b;
    b.request_id = "r1";
    b.finished = true;
    s.Push(b);
    s.Push(a);  // after the final message: dropped
  });
  auto first = s.Next();
  ASSERT_TRUE(first.has_value());
  EXPECT_FALSE(first->finished);
  auto second = s.Next();
  ASSERT_TRUE(second.has_value());
  EXPECT_TRUE(second->finished);
  producer.join();
  EXPECT_FALSE(s.Next().has_value());
  EXPECT_FALSE(s.Next(absl::Milliseconds(1)).has_value());
  EXPECT_TRUE(s.finished());
  EXPECT_EQ(notified, 2);
}

TEST(BatchBuilderTest, FlattensChunksTablesSlotsAndLogitRows) {
  Sequence a, b;
  a.tokens = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27};  // 18
  a.num_prompt_tokens = 18;
  a.num_computed_tokens = 17;  // decode of the last token
  a.block_table = {7, 3};
  b.tokens.assign(40, 5);
  b.num_prompt_tokens = 40;
  b.num_computed_tokens = 16;
  b.block_table = {9, 1};  // covers 32: chunk of 16 does not reach the end
  std::vector<ScheduledSeq> sched{{&a, 1}, {&b, 16}};
  models::Batch batch;
  std::vector<int> logits_seq;
  BuildBatch(sched, &batch, &logits_seq);
  EXPECT_EQ(batch.num_tokens(), 17);
  EXPECT_EQ(batch.query_start_loc, (std::vector<int32_t>{0, 1, 17}));
  EXPECT_EQ(batch.seq_lens, (std::vector<int32_t>{18, 32}));
  EXPECT_EQ(batch.positions[0], 17);
  EXPECT_EQ(batch.input_ids[0], 27);
  EXPECT_EQ(batch.slot_mapping[0], 3 * 16 + 1);
  EXPECT_EQ(batch.positions[1], 16);
  EXPECT_EQ(batch.slot_mapping[1], 1 * 16 + 0);
  EXPECT_EQ(batch.max_blocks_per_seq, 2);
  EXPECT_EQ(batch.block_tables, (std::vector<int32_t>{7, 3, 9, 1}));
  EXPECT_EQ(batch.logits_indices, (std::vector<int32_t>{0}));
  EXPECT_EQ(logits_seq, (std::vector<int>{0}));
}

TEST(BatchBuilderTest, EmbeddingOverridesFollowTheChunk) {
  Sequence a;
  a.tokens.assign(20, 3);
  a.num_prompt_tokens = 20;
  a.num_computed_tokens = 8;
  a.block_table = {0, 1};
  auto rows = std::make_shared<std::vector<float>>(10 * 2);  // 10 tokens, hidden 2
  for (size_t i = 0; i < rows->size(); ++i) (*rows)[i] = float(i);
  std::vector<ContentSpan> content{
      {.offset = 4, .num_tokens = 10, .digest = 1, .embeddings = rows}};
  a.content = &content;
  std::vector<ScheduledSeq> sched{{&a, 12}};  // tokens 8..19
  models::Batch batch;
  std::vector<int> logits_seq;
  BuildBatch(sched, &batch, &logits_seq);
  ASSERT_EQ(batch.embedding_overrides.size(), 1u);
  EXPECT_EQ(batch.embedding_overrides[0].token_index, 0);
  EXPECT_EQ(batch.embedding_overrides[0].num_rows, 6);  // tokens 8..13
  EXPECT_EQ(batch.embedding_overrides[0].data, rows->data() + 4 * 2);
}

}  // namespace
}  // namespace muse::engine
