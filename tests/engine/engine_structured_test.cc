// Structured output in the engine (issue #17) on the real CPU runner with a random checkpoint:
// the grammar does all the work. Every sample's bytes (decoded through the grammar's vocabulary
// and replayed through a fresh GrammarMatcher) are in the grammar's language; n > 1 samples
// diverge and all conform; preemption keeps conformance and the tokens; seeded requests repeat;
// a complete grammar finishes "stop" at once; min_tokens / ignore_eos lose to the grammar; a
// grammar the vocabulary cannot continue fails that request only; every KV block comes back.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "src/engine/engine_core.h"
#include "src/structured/grammar.h"
#include "src/structured/matcher.h"
#include "src/structured/token_vocabulary.h"
#include "tests/engine/engine_test_model.h"
#include "tests/engine/structured_test_grammars.h"

namespace muse::engine {
namespace {

using structured::CompiledGrammar;

constexpr int kVocab = 300;
constexpr int kEos = 2;

std::string ModelDir() {
  static const std::string dir = testing::WriteTestModel(
      "muse_engine_structured_", testing::SmallLlamaConfig(kVocab, 136, "float32", kEos),
      {.seed = 23});
  return dir;
}

std::shared_ptr<const CompiledGrammar> Compile(structured::Grammar g, int vocab_size = kVocab) {
  return testing::CompileForTest(std::move(g), vocab_size, kEos);
}
std::shared_ptr<const CompiledGrammar> ObjectGrammar() { return Compile(testing::ObjectGrammar()); }
std::shared_ptr<const CompiledGrammar> DigitsGrammar() { return Compile(testing::DigitsGrammar()); }
std::shared_ptr<const CompiledGrammar> LiteralGrammar(const std::string& text) {
  return Compile(testing::LiteralGrammar(text));
}

Request Constrained(const std::string& id, std::shared_ptr<const CompiledGrammar> g, int max_tokens,
                    float temperature, int prompt_len = 12) {
  Request r;
  r.id = id;
  r.prompt_token_ids = testing::RandomPrompt(
      prompt_len, static_cast<int>(std::hash<std::string>{}(id) % 997), kVocab);
  r.sampling.max_tokens = max_tokens;
  r.sampling.temperature = temperature;
  r.sampling.grammar = std::move(g);
  return r;
}

struct Sample {
  std::vector<int32_t> tokens;
  std::optional<FinishReason> finish;
  std::string stop_reason;
  std::string text;
};
struct Result {
  std::map<int, Sample> samples;
  RequestOutput last;
};

class Harness {
 public:
  explicit Harness(int64_t num_blocks, SchedulerConfig sc = {},
                   std::shared_ptr<TextDecoderFactory> text = nullptr)
      : runner_(testing::MakeCpuRunner(ModelDir(), num_blocks)) {
    EngineOptions eo;
    eo.scheduler = sc;
    eo.text_decoder = std::move(text);
    eo.seed = 7;
    eo.sampling_threads = 2;  // the masks go over the pool when a step has several
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
          if (d.finish_reason) {
            smp.finish = d.finish_reason;
            smp.stop_reason = d.stop_reason;
          }
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

std::string Bytes(const CompiledGrammar& g, const std::vector<int32_t>& tokens) {
  return testing::GrammarBytes(g, tokens);
}

void ExpectConforms(const std::shared_ptr<const CompiledGrammar>& g, const Sample& s,
                    int max_tokens, const std::string& what) {
  testing::ExpectInLanguage(g, s.tokens, s.finish, max_tokens, what);
}

TEST(EngineStructuredTest, EverySampleIsInTheLanguageAndSamplesDiverge) {
  const auto g = ObjectGrammar();
  ASSERT_NE(g, nullptr);
  Harness h(256, {.max_num_batched_tokens = 32, .max_num_seqs = 16});
  std::vector<Request> reqs;
  for (int i = 0; i < 4; ++i) {
    Request r = Constrained(absl::StrCat("obj", i), g, 96, 1.0f, 5 + 9 * i);
    r.sampling.n = 3;
    r.sampling.seed = 100 + i;
    if (i == 1) r.sampling.top_k = 20;
    if (i == 2) r.sampling.repetition_penalty = 1.3f;
    if (i == 3) r.sampling.logprobs = 3;
    reqs.push_back(r);
  }
  // An unconstrained neighbour in the same batches.
  Request free_req = Constrained("free", nullptr, 20, 1.0f);
  free_req.sampling.ignore_eos = true;
  reqs.push_back(free_req);
  for (const Request& r : reqs) ASSERT_TRUE(h.Add(r).ok());
  h.RunToEnd();
  std::set<std::string> outputs;
  for (int i = 0; i < 4; ++i) {
    const Result& res = h.result(absl::StrCat("obj", i));
    ASSERT_EQ(res.samples.size(), 3u);
    EXPECT_TRUE(res.last.finished);
    EXPECT_TRUE(res.last.error.ok()) << res.last.error;
    for (const auto& [idx, s] : res.samples) {
      const std::string what = absl::StrCat("obj", i, " sample ", idx);
      ExpectConforms(g, s, 96, what);
      // The language is finite and 96 tokens cover its longest string: every sample completes.
      EXPECT_EQ(s.finish, FinishReason::kStop) << what;
      outputs.insert(Bytes(*g, s.tokens));
    }
  }
  EXPECT_GE(outputs.size(), 8u) << "samples should diverge under temperature 1";
  EXPECT_EQ(h.result("free").samples[0].tokens.size(), 20u);
  EXPECT_EQ(h.core().Stats().kv_blocks_used, 0);
  EXPECT_EQ(h.core().Stats().requests_failed, 0);
}

// A grammar that is complete after a non-EOS token ends the sample at once ("stop", no EOS, no
// extra step); greedy and sampled alike.
TEST(EngineStructuredTest, CompleteGrammarStopsWithoutExtraTokens) {
  const auto g = LiteralGrammar("abc-42");
  ASSERT_NE(g, nullptr);
  Harness h(64);
  for (float t : {0.0f, 1.0f}) {
    for (int n : {1, 2}) {
      Request r = Constrained(absl::StrCat("lit_t", t, "_n", n), g, 50, t);
      r.sampling.n = n;
      ASSERT_TRUE(h.Add(r).ok());
    }
  }
  h.RunToEnd();
  for (float t : {0.0f, 1.0f}) {
    for (int n : {1, 2}) {
      const Result& res = h.result(absl::StrCat("lit_t", t, "_n", n));
      for (const auto& [idx, s] : res.samples) {
        EXPECT_EQ(Bytes(*g, s.tokens), "abc-42");
        EXPECT_EQ(s.finish, FinishReason::kStop);
        EXPECT_EQ(s.stop_reason, "");
        EXPECT_NE(s.tokens.back(), kEos);
        ExpectConforms(g, s, 50, absl::StrCat("t=", t, " sample ", idx));
      }
    }
  }
  // One mask per constrained logits row: an unforked request's first row serves all n samples.
  int64_t masks = 0;
  for (float t : {0.0f, 1.0f}) {
    for (int n : {1, 2}) {
      const Result& res = h.result(absl::StrCat("lit_t", t, "_n", n));
      masks += n == 1 ? 0 : 1 - n;
      for (const auto& [idx, s] : res.samples) masks += static_cast<int64_t>(s.tokens.size());
    }
  }
  const EngineStats st = h.core().Stats();
  EXPECT_EQ(st.num_token_masks, masks);
  EXPECT_GT(st.sum_token_mask_compute, absl::ZeroDuration());
  EXPECT_GE(st.sum_token_mask_wait, absl::ZeroDuration());
  EXPECT_EQ(st.kv_blocks_used, 0);
}

// Text through the grammar's bytes, holding the last byte back until Flush (as a UTF-8 decoder
// holds an incomplete character).
class HoldingDecoder : public TextDecoder {
 public:
  explicit HoldingDecoder(std::shared_ptr<const CompiledGrammar> g) : g_(std::move(g)) {}
  std::string Decode(int32_t id) override {
    held_ += g_->vocab().bytes(id);
    std::string out = held_.substr(0, held_.empty() ? 0 : held_.size() - 1);
    held_.erase(0, out.size());
    return out;
  }
  std::string Flush() override { return std::exchange(held_, ""); }

 private:
  std::shared_ptr<const CompiledGrammar> g_;
  std::string held_;
};
class HoldingFactory : public TextDecoderFactory {
 public:
  explicit HoldingFactory(std::shared_ptr<const CompiledGrammar> g) : g_(std::move(g)) {}
  std::unique_ptr<TextDecoder> Create(const std::vector<int32_t>&) override {
    return std::make_unique<HoldingDecoder>(g_);
  }

 private:
  std::shared_ptr<const CompiledGrammar> g_;
};

// A complete grammar (or an EOS) releases what the text decoder and the stop-string matcher held
// back, in that order; a stop string inside the grammar's output still cuts it.
TEST(EngineStructuredTest, CompleteGrammarFlushesTheTextAndStopStringsStillApply) {
  const auto g = LiteralGrammar("abc-42");
  ASSERT_NE(g, nullptr);
  Harness h(64, {}, std::make_shared<HoldingFactory>(g));
  Request whole = Constrained("whole", g, 20, 1.0f);
  whole.sampling.stop = {"2x", "4z"};  // prefixes of both get held back at the end
  Request cut = Constrained("cut", g, 20, 1.0f);
  cut.sampling.stop = {"c-"};
  // EOS right after the first digit: the held digit comes out too.
  Request eos = Constrained("eos", DigitsGrammar(), 20, 1.0f);
  eos.sampling.logit_bias = {{kEos, 100.0f}};
  for (char d = '0'; d <= '9'; ++d) eos.sampling.stop.push_back(std::string(1, d) + "x");
  ASSERT_TRUE(h.Add(whole).ok());
  ASSERT_TRUE(h.Add(cut).ok());
  ASSERT_TRUE(h.Add(eos).ok());
  h.RunToEnd();
  const Sample& w = h.result("whole").samples[0];
  EXPECT_EQ(w.text, "abc-42");
  EXPECT_EQ(w.finish, FinishReason::kStop);
  EXPECT_EQ(w.stop_reason, "");
  const Sample& c = h.result("cut").samples[0];
  EXPECT_EQ(c.text, "ab");
  EXPECT_EQ(c.finish, FinishReason::kStop);
  EXPECT_EQ(c.stop_reason, "c-");
  const Sample& e = h.result("eos").samples[0];
  ASSERT_EQ(e.tokens.size(), 2u);
  EXPECT_EQ(e.stop_reason, absl::StrCat("token:", kEos));
  EXPECT_FALSE(e.text.empty());
  EXPECT_EQ(e.text, Bytes(*g, e.tokens));
}

// Preemption under a tiny pool (recompute) keeps each sample's matcher: identical tokens to the
// requests run alone, and all conform.
TEST(EngineStructuredTest, PreemptionKeepsConformanceAndTokens) {
  const auto g = DigitsGrammar();
  ASSERT_NE(g, nullptr);
  std::vector<Request> reqs;
  for (int i = 0; i < 4; ++i) {
    Request r = Constrained(absl::StrCat("p", i), g, 36, 1.0f, 40);
    r.sampling.seed = 50 + i;
    r.sampling.logit_bias = {{kEos, -100.0f}};  // EOS (allowed after any digit) all but never
    reqs.push_back(r);
  }
  reqs[2].priority = Priority::kBatch;
  Harness h(10, {.max_num_batched_tokens = 64, .max_num_seqs = 4});
  for (const Request& r : reqs) ASSERT_TRUE(h.Add(r).ok());
  h.RunToEnd();
  EXPECT_GT(h.core().Stats().num_preemptions, 0);
  for (const Request& r : reqs) {
    Harness alone(256);
    ASSERT_TRUE(alone.Add(r).ok());
    alone.RunToEnd();
    const Sample& s = h.result(r.id).samples[0];
    EXPECT_EQ(s.tokens, alone.result(r.id).samples[0].tokens) << r.id;
    ExpectConforms(g, s, 36, r.id);
    EXPECT_EQ(s.finish, FinishReason::kLength) << r.id;
  }
  EXPECT_EQ(h.core().Stats().kv_blocks_used, 0);
}

// A seeded constrained request gives the same tokens alone and in a busy batch.
TEST(EngineStructuredTest, SeededConstrainedSamplingRepeatsAcrossBatchMixes) {
  const auto g = ObjectGrammar();
  ASSERT_NE(g, nullptr);
  Request r = Constrained("seeded", g, 96, 0.9f);
  r.sampling.seed = 4242;
  r.sampling.n = 2;
  Harness alone(256);
  ASSERT_TRUE(alone.Add(r).ok());
  alone.RunToEnd();
  Harness busy(256, {.max_num_batched_tokens = 24});
  for (int i = 0; i < 5; ++i) {
    Request other = Constrained(absl::StrCat("other", i), i % 2 ? g : nullptr, 30, 1.0f, 20 + i);
    other.sampling.ignore_eos = true;
    ASSERT_TRUE(busy.Add(other).ok());
  }
  ASSERT_TRUE(busy.Add(r).ok());
  busy.RunToEnd();
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(busy.result("seeded").samples[i].tokens, alone.result("seeded").samples[i].tokens);
    ExpectConforms(g, busy.result("seeded").samples[i], 96, absl::StrCat("sample ", i));
  }
}

// min_tokens holds EOS back while the grammar can go on; where the grammar allows nothing but EOS
// (or is complete), the grammar wins. ignore_eos does not keep a complete grammar going.
TEST(EngineStructuredTest, GrammarWinsOverMinTokensAndIgnoreEos) {
  const auto digits = DigitsGrammar();
  const auto lit = LiteralGrammar("x");
  ASSERT_NE(digits, nullptr);
  ASSERT_NE(lit, nullptr);
  Harness h(64);
  Request eager = Constrained("eager_eos", digits, 30, 1.0f);
  eager.sampling.logit_bias = {{kEos, 100.0f}};  // EOS whenever allowed...
  eager.sampling.min_tokens = 6;                 // ...but not before 6 tokens
  eager.sampling.seed = 1;
  Request ignore = Constrained("ignore_eos", digits, 30, 1.0f);
  ignore.sampling.logit_bias = {{kEos, 100.0f}};
  ignore.sampling.ignore_eos = true;  // the grammar's EOS still ends it
  ignore.sampling.seed = 2;
  Request short_lit = Constrained("short", lit, 30, 1.0f);
  short_lit.sampling.min_tokens = 10;  // "x" is all the grammar allows
  for (const Request& r : {eager, ignore, short_lit}) ASSERT_TRUE(h.Add(r).ok());
  h.RunToEnd();
  const Sample& e = h.result("eager_eos").samples[0];
  ASSERT_EQ(e.tokens.size(), 7u) << Bytes(*digits, e.tokens);
  EXPECT_EQ(e.tokens.back(), kEos);
  EXPECT_EQ(e.finish, FinishReason::kStop);
  EXPECT_EQ(e.stop_reason, absl::StrCat("token:", kEos));
  ExpectConforms(digits, e, 30, "eager_eos");
  const Sample& i = h.result("ignore_eos").samples[0];
  ASSERT_EQ(i.tokens.size(), 2u);
  EXPECT_EQ(i.tokens.back(), kEos);
  EXPECT_EQ(i.finish, FinishReason::kStop);
  const Sample& s = h.result("short").samples[0];
  EXPECT_EQ(Bytes(*lit, s.tokens), "x");
  EXPECT_EQ(s.finish, FinishReason::kStop);
}

// A grammar the vocabulary cannot continue (no token holds 'Z') fails its request with a message
// saying where; the other requests in the same steps finish normally.
TEST(EngineStructuredTest, DeadEndFailsOnlyThatRequest) {
  const auto dead = LiteralGrammar("abZ");
  const auto ok = ObjectGrammar();
  ASSERT_NE(dead, nullptr);
  ASSERT_NE(ok, nullptr);
  Harness h(64);
  Request forked = Constrained("dead_forked", dead, 20, 1.0f);  // dies after "ab"
  forked.sampling.n = 2;
  Request first = Constrained("dead_at_once", LiteralGrammar("Z"), 20, 0.0f);
  first.sampling.n = 3;  // dies before the fork
  Request good = Constrained("good", ok, 96, 1.0f);
  Request free_req = Constrained("free", nullptr, 12, 1.0f);
  free_req.sampling.ignore_eos = true;
  for (const Request& r : {forked, first, good, free_req}) ASSERT_TRUE(h.Add(r).ok());
  h.RunToEnd();
  const Result& d = h.result("dead_forked");
  EXPECT_TRUE(d.last.finished);
  EXPECT_EQ(d.last.error.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(d.last.error.message())
                .find("no token of the vocabulary can continue the grammar after "),
            std::string::npos)
      << d.last.error;
  for (const auto& [idx, s] : d.samples) {
    EXPECT_EQ(s.finish, FinishReason::kError);
    EXPECT_EQ(Bytes(*dead, s.tokens), "ab") << "sample " << idx;
  }
  EXPECT_NE(std::string(d.last.error.message()).find("output so far: \"ab\""), std::string::npos)
      << d.last.error;
  const Result& f = h.result("dead_at_once");
  EXPECT_EQ(f.last.error.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(f.last.error.message()).find("after 0 generated tokens"), std::string::npos)
      << f.last.error;
  ASSERT_EQ(f.samples.size(), 3u);
  for (const auto& [idx, s] : f.samples) {
    EXPECT_TRUE(s.tokens.empty());
    EXPECT_EQ(s.finish, FinishReason::kError);
  }
  EXPECT_TRUE(h.result("good").last.error.ok());
  ExpectConforms(ok, h.result("good").samples[0], 96, "good");
  EXPECT_EQ(h.result("free").samples[0].tokens.size(), 12u);
  EXPECT_EQ(h.result("free").samples[0].finish, FinishReason::kLength);
  const EngineStats st = h.core().Stats();
  EXPECT_EQ(st.requests_failed, 2);
  EXPECT_EQ(st.kv_blocks_used, 0);
}

TEST(EngineStructuredTest, GrammarForAnotherVocabularyIsInvalidArgument) {
  const auto g = Compile(testing::LiteralGrammar("a"), kVocab - 1);
  ASSERT_NE(g, nullptr);
  Harness h(16);
  const absl::Status st = h.Add(Constrained("wrong_vocab", g, 4, 0.0f));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), absl::StrCat("grammar was compiled for a vocabulary of ", kVocab - 1,
                                       " tokens, the model's vocab_size is ", kVocab));
}

}  // namespace
}  // namespace muse::engine
