// The thinking budget in the engine (issue #18) on the real CPU runner with a random checkpoint:
// a budget of N gives exactly N reasoning tokens, then the end tag and suffix forced one token per
// step through the structured-output mask path, then free generation identical in kind to a run
// without the budget; budget 0; a model that closes its block itself is never forced; an output
// that does not open the block has none; n = 2 counts per sample; preemption (recompute) gives
// the same tokens; max_tokens cuts inside the block; every bad field is InvalidArgument naming it;
// stops_after_block: stop strings match the text after the block only.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "src/engine/engine_core.h"
#include "tests/engine/engine_test_model.h"
#include "tests/engine/structured_test_grammars.h"

namespace muse::engine {
namespace {

constexpr int kVocab = 300;
constexpr int kEos = 2;
// Token ids standing for "<think>", "</think>" and the template's "\n\n" after it.
const std::vector<int32_t> kStart = {10, 11};
const std::vector<int32_t> kEnd = {20, 21, 22};
const std::vector<int32_t> kSuffix = {23};

std::string ModelDir() {
  static const std::string dir = testing::WriteTestModel(
      "muse_engine_thinking_", testing::SmallLlamaConfig(kVocab, 136, "float32", kEos),
      {.seed = 29});
  return dir;
}

Request Plain(const std::string& id, int max_tokens, int prompt_len = 12) {
  Request r;
  r.id = id;
  r.prompt_token_ids = testing::RandomPrompt(
      prompt_len, static_cast<int>(std::hash<std::string>{}(id) % 997), kVocab);
  r.sampling.max_tokens = max_tokens;
  r.sampling.temperature = 0.0f;
  // Generation never ends early, and the model never writes the end tag's first id by chance.
  r.sampling.logit_bias = {{kEos, -100.0f}, {kEnd[0], -100.0f}};
  return r;
}

ThinkingBudget Inside(int budget) {
  ThinkingBudget t;
  t.budget = budget;
  t.starts_inside = true;
  t.end_token_ids = kEnd;
  t.forced_suffix_token_ids = kSuffix;
  return t;
}

struct Sample {
  std::vector<int32_t> tokens;
  std::string text;  // with a text decoder
  std::optional<FinishReason> finish;
  int reasoning = -1;  // the last delta's running count
};
struct Result {
  std::map<int, Sample> samples;
  RequestOutput last;
};

class Harness {
 public:
  explicit Harness(int64_t num_blocks, SchedulerConfig sc = {},
                   std::shared_ptr<TextDecoderFactory> decoder = nullptr)
      : runner_(testing::MakeCpuRunner(ModelDir(), num_blocks)) {
    EngineOptions eo;
    eo.scheduler = sc;
    eo.text_decoder = std::move(decoder);
    eo.seed = 7;
    eo.sampling_threads = 2;
    auto c = EngineCore::Create(runner_.get(), eo);
    EXPECT_TRUE(c.ok()) << c.status();
    core_ = std::move(*c);
  }
  absl::Status Add(const Request& r) {
    auto s = std::make_shared<OutputStream>(r.id);
    RETURN_IF_ERROR(core_->AddRequest(r, s));
    streams_[r.id] = s;
    return absl::OkStatus();
  }
  void RunToEnd() {
    for (int i = 0; i < 2000 && core_->HasWork(); ++i) {
      ASSERT_TRUE(core_->Step().ok());
      const absl::Status inv = core_->CheckInvariants();
      ASSERT_TRUE(inv.ok()) << inv;
      Drain();
    }
    ASSERT_FALSE(core_->HasWork());
    Drain();
  }
  EngineCore& core() { return *core_; }
  Result& result(const std::string& id) { return results_[id]; }

 private:
  void Drain() {
    for (auto& [id, s] : streams_) {
      while (auto out = s->TryNext()) {
        for (auto& d : out->samples) {
          Sample& smp = results_[id].samples[d.index];
          smp.tokens.insert(smp.tokens.end(), d.token_ids.begin(), d.token_ids.end());
          smp.text += d.text;
          // Running totals never go down.
          EXPECT_GE(d.reasoning_tokens, smp.reasoning) << id;
          smp.reasoning = d.reasoning_tokens;
          if (d.finish_reason) smp.finish = d.finish_reason;
        }
        if (results_[id].last.usage.reasoning_tokens > out->usage.reasoning_tokens) {
          ADD_FAILURE() << id << ": usage.reasoning_tokens went down";
        }
        results_[id].last = std::move(*out);
      }
    }
  }

  std::unique_ptr<runtime::ModelRunner> runner_;
  std::unique_ptr<EngineCore> core_;
  std::map<std::string, std::shared_ptr<OutputStream>> streams_;
  std::map<std::string, Result> results_;
};

// Runs `r` alone on a roomy engine.
Result RunAlone(const Request& r) {
  Harness h(256);
  EXPECT_TRUE(h.Add(r).ok());
  h.RunToEnd();
  return h.result(r.id);
}

std::vector<int32_t> Slice(const std::vector<int32_t>& v, size_t from, size_t to) {
  return {v.begin() + std::min(from, v.size()), v.begin() + std::min(to, v.size())};
}

std::vector<int32_t> Forced() {
  std::vector<int32_t> f = kEnd;
  f.insert(f.end(), kSuffix.begin(), kSuffix.end());
  return f;
}

TEST(EngineThinkingTest, BudgetGivesExactlyThatManyReasoningTokensThenTheEndString) {
  const Request free_run = Plain("b8", 24);
  const Result free = RunAlone(free_run);
  Request r = free_run;
  r.sampling.thinking = Inside(8);
  const Result got = RunAlone(r);
  const Sample& s = got.samples.at(0);
  ASSERT_EQ(s.tokens.size(), 24u);
  // Before the budget is spent the budget changes nothing (greedy: the free run's tokens).
  EXPECT_EQ(Slice(s.tokens, 0, 8), Slice(free.samples.at(0).tokens, 0, 8));
  EXPECT_EQ(Slice(s.tokens, 8, 12), Forced());
  // Then free generation: the end tag's first id is biased away, so it is not written again.
  for (size_t i = 12; i < s.tokens.size(); ++i) EXPECT_NE(s.tokens[i], kEnd[0]) << i;
  EXPECT_EQ(s.reasoning, 8);
  EXPECT_EQ(s.finish, FinishReason::kLength);
  EXPECT_EQ(got.last.usage.reasoning_tokens, 8);
  EXPECT_EQ(got.last.usage.completion_tokens, 24);  // reasoning counts toward max_tokens
}

TEST(EngineThinkingTest, BudgetZeroForcesTheEndStringFirst) {
  Request r = Plain("b0", 10);
  r.sampling.thinking = Inside(0);
  const Result got = RunAlone(r);
  const Sample& s = got.samples.at(0);
  ASSERT_EQ(s.tokens.size(), 10u);
  EXPECT_EQ(Slice(s.tokens, 0, 4), Forced());
  EXPECT_EQ(s.reasoning, 0);
  EXPECT_EQ(got.last.usage.reasoning_tokens, 0);
}

TEST(EngineThinkingTest, NoSuffixForcesTheEndTagOnly) {
  Request r = Plain("nosuffix", 12);
  ThinkingBudget t = Inside(3);
  t.forced_suffix_token_ids.clear();
  r.sampling.thinking = t;
  const Sample s = RunAlone(r).samples.at(0);
  EXPECT_EQ(Slice(s.tokens, 3, 6), kEnd);
  EXPECT_NE(s.tokens[6], kEnd[0]);
  EXPECT_EQ(s.reasoning, 3);
}

// The model writes the end tag by itself before the budget: nothing is forced and the output is
// the free run's. The "end tag" is two ids the free greedy run writes at positions 3 and 4.
TEST(EngineThinkingTest, ModelClosingItselfIsNotForced) {
  Request free_run = Plain("early", 20);
  free_run.sampling.logit_bias = {{kEos, -100.0f}};
  const std::vector<int32_t> free = RunAlone(free_run).samples.at(0).tokens;
  ASSERT_EQ(free.size(), 20u);
  const std::vector<int32_t> tag = Slice(free, 3, 5);
  // Where the tag first ends in the free output (at position 4 unless it occurs earlier).
  const auto at = std::search(free.begin(), free.end(), tag.begin(), tag.end());
  const int closes = static_cast<int>(at - free.begin());
  ASSERT_LE(closes, 3);
  Request r = free_run;
  ThinkingBudget t = Inside(8);
  t.end_token_ids = tag;
  r.sampling.thinking = t;
  const Result got = RunAlone(r);
  EXPECT_EQ(got.samples.at(0).tokens, free);
  EXPECT_EQ(got.samples.at(0).reasoning, closes);
  EXPECT_EQ(got.last.usage.reasoning_tokens, closes);
}

// Without starts_inside the block opens only if the output begins with the start ids; the start
// tag is not reasoning. The start ids here are the free run's first two tokens.
TEST(EngineThinkingTest, ModelOpensTheBlockWithTheStartIds) {
  const Request free_run = Plain("opens", 16);
  const std::vector<int32_t> free = RunAlone(free_run).samples.at(0).tokens;
  ThinkingBudget t = Inside(5);
  t.starts_inside = false;
  t.start_token_ids = Slice(free, 0, 2);
  Request r = free_run;
  r.sampling.thinking = t;
  const Sample s = RunAlone(r).samples.at(0);
  EXPECT_EQ(Slice(s.tokens, 0, 7), Slice(free, 0, 7));
  EXPECT_EQ(Slice(s.tokens, 7, 11), Forced());
  EXPECT_EQ(s.reasoning, 5);

  // A start tag the output does not begin with: no block, all content, nothing forced.
  t.start_token_ids = {free[0], static_cast<int32_t>(free[1] == 40 ? 41 : 40)};
  r.sampling.thinking = t;
  const Sample none = RunAlone(r).samples.at(0);
  EXPECT_EQ(none.tokens, free);
  EXPECT_EQ(none.reasoning, 0);
}

TEST(EngineThinkingTest, EachSampleCountsItsOwn) {
  Request r = Plain("n2", 20);
  r.sampling.n = 2;
  r.sampling.temperature = 1.0f;
  r.sampling.seed = 5;
  r.sampling.thinking = Inside(6);
  const Result got = RunAlone(r);
  ASSERT_EQ(got.samples.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    const Sample& s = got.samples.at(i);
    ASSERT_EQ(s.tokens.size(), 20u) << i;
    EXPECT_EQ(Slice(s.tokens, 6, 10), Forced()) << i;
    EXPECT_EQ(s.reasoning, 6) << i;
  }
  EXPECT_NE(got.samples.at(0).tokens, got.samples.at(1).tokens);
  EXPECT_EQ(got.last.usage.reasoning_tokens, 12);
  EXPECT_EQ(got.last.usage.completion_tokens, 40);
}

TEST(EngineThinkingTest, MaxTokensCutsInsideTheBlock) {
  Request r = Plain("cut", 5);
  r.sampling.thinking = Inside(8);
  const Result got = RunAlone(r);
  EXPECT_EQ(got.samples.at(0).tokens.size(), 5u);
  EXPECT_EQ(got.samples.at(0).finish, FinishReason::kLength);
  EXPECT_EQ(got.samples.at(0).reasoning, 5);
}

// Preempted (recomputed) requests give the tokens they give alone; the budget state survives.
TEST(EngineThinkingTest, PreemptionGivesTheSameTokens) {
  std::vector<Request> reqs;
  for (int i = 0; i < 4; ++i) {
    Request r = Plain(absl::StrCat("p", i), 36, 40);
    r.sampling.thinking = Inside(4 + 6 * i);  // forced before, around and after preemptions
    reqs.push_back(r);
  }
  reqs[2].priority = Priority::kBatch;
  Harness h(10, {.max_num_batched_tokens = 64, .max_num_seqs = 4});
  for (const Request& r : reqs) ASSERT_TRUE(h.Add(r).ok());
  h.RunToEnd();
  EXPECT_GT(h.core().Stats().num_preemptions, 0);
  for (const Request& r : reqs) {
    const Sample& s = h.result(r.id).samples.at(0);
    const int budget = r.sampling.thinking->budget;
    EXPECT_EQ(s.tokens, RunAlone(r).samples.at(0).tokens) << r.id;
    EXPECT_EQ(Slice(s.tokens, budget, budget + 4), Forced()) << r.id;
    EXPECT_EQ(s.reasoning, budget) << r.id;
  }
  EXPECT_EQ(h.core().Stats().kv_blocks_used, 0);
}

TEST(EngineThinkingTest, BadFieldsAreInvalidArgumentNamingThem) {
  Harness h(64);
  const auto expect_bad = [&](const ThinkingBudget& t, const std::string& field) {
    Request r = Plain("bad", 8);
    r.sampling.thinking = t;
    const absl::Status st = h.core().ValidateRequest(r);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_NE(st.message().find(field), std::string::npos) << st;
  };
  ThinkingBudget t = Inside(-1);
  expect_bad(t, "thinking.budget");
  t = Inside(4);
  t.end_token_ids.clear();
  expect_bad(t, "thinking.end_token_ids");
  t = Inside(4);
  t.end_token_ids = {20, kVocab};
  expect_bad(t, "thinking.end_token_ids");
  t = Inside(4);
  t.forced_suffix_token_ids = {-3};
  expect_bad(t, "thinking.forced_suffix_token_ids");
  t = Inside(4);
  t.starts_inside = false;
  expect_bad(t, "thinking.start_token_ids");
  t.start_token_ids = {kVocab + 5};
  expect_bad(t, "thinking.start_token_ids");

  Request r = Plain("grammar", 8);
  r.sampling.thinking = Inside(4);
  r.sampling.grammar = testing::CompileForTest(testing::DigitsGrammar(), kVocab, kEos);
  ASSERT_NE(r.sampling.grammar, nullptr);
  const absl::Status st = h.core().ValidateRequest(r);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("thinking"), std::string::npos) << st;
  EXPECT_NE(st.message().find("grammar"), std::string::npos) << st;
}

// Token id -> "<id>": a stop string "<7>" matches exactly where token 7 was written.
class IdTextDecoder : public TextDecoder {
 public:
  std::string Decode(int32_t id) override { return absl::StrCat("<", id, ">"); }
  std::string Flush() override { return ""; }
};
class IdTextDecoderFactory : public TextDecoderFactory {
 public:
  std::unique_ptr<TextDecoder> Create(const std::vector<int32_t>&) override {
    return std::make_unique<IdTextDecoder>();
  }
};

Sample RunWithText(const Request& r) {
  Harness h(256, {}, std::make_shared<IdTextDecoderFactory>());
  EXPECT_TRUE(h.Add(r).ok());
  h.RunToEnd();
  return h.result(r.id).samples.at(0);
}

// ThinkingBudget::stops_after_block: a stop string the model writes inside the block (reasoning,
// tags, forced suffix) does not end the sample; after the block it does. Without the flag the
// same stop string ends it inside the block.
TEST(EngineThinkingTest, StopsAfterBlockSkipTheBlock) {
  Request r = Plain("stops", 24);
  r.sampling.thinking = Inside(6);
  const Sample free = RunWithText(r);
  ASSERT_EQ(free.tokens.size(), 24u);
  const size_t content_at = 6 + Forced().size();  // 6 reasoning tokens, then the forced tokens
  // Two stop strings: the text of a reasoning token and of a content token.
  const int32_t in_block = free.tokens[2], in_content = free.tokens[content_at + 3];
  auto is_stop = [&](int32_t t) { return t == in_block || t == in_content; };
  Request with = r;
  with.sampling.stop = {absl::StrCat("<", in_block, ">"), absl::StrCat("<", in_content, ">")};
  SCOPED_TRACE(with.sampling.stop[0] + " " + with.sampling.stop[1]);
  with.sampling.thinking->stops_after_block = true;
  const Sample got = RunWithText(with);
  // Stopped at the content's first stop token (its text left out), not inside the block.
  const size_t at = std::find_if(free.tokens.begin() + content_at, free.tokens.end(), is_stop) -
                    free.tokens.begin();
  ASSERT_LE(at, content_at + 3);
  EXPECT_EQ(got.finish, FinishReason::kStop);
  EXPECT_EQ(got.tokens, Slice(free.tokens, 0, at + 1));
  std::string text;  // the free run's text up to that token
  for (size_t k = 0; k < at; ++k) absl::StrAppend(&text, "<", free.tokens[k], ">");
  EXPECT_EQ(got.text, text);
  // Without the flag: the first stop token, inside the block, ends the sample.
  with.sampling.thinking->stops_after_block = false;
  const Sample cut = RunWithText(with);
  const size_t first =
      std::find_if(free.tokens.begin(), free.tokens.end(), is_stop) - free.tokens.begin();
  EXPECT_LE(first, 2u);
  EXPECT_EQ(cut.finish, FinishReason::kStop);
  EXPECT_EQ(cut.tokens.size(), first + 1);
  // An output that does not open the block is content from its first token: the flag changes
  // nothing there (the start tag is biased away; the first token's text is the stop string).
  Request no_block = Plain("stops", 24);
  ThinkingBudget t = Inside(6);
  t.starts_inside = false;
  t.start_token_ids = kStart;
  t.stops_after_block = true;
  no_block.sampling.thinking = t;
  no_block.sampling.logit_bias.push_back({kStart[0], -100.0f});
  const Sample plain = RunWithText(no_block);
  ASSERT_FALSE(plain.tokens.empty());
  no_block.sampling.stop = {absl::StrCat("<", plain.tokens[0], ">")};
  const Sample stopped = RunWithText(no_block);
  EXPECT_EQ(stopped.finish, FinishReason::kStop);
  EXPECT_EQ(stopped.tokens.size(), 1u);
  EXPECT_EQ(stopped.text, "");
}

}  // namespace
}  // namespace muse::engine
