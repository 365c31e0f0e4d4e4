#include "src/engine/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>

namespace muse::engine {
namespace {

constexpr int kVocab = 37;  // odd size on purpose

struct RowFixture {
  std::vector<float> logits;
  SamplingParams params;
  std::vector<int32_t> tokens{1, 2, 3};  // prompt
  int num_prompt = 3;
  std::vector<int64_t> eos{kVocab - 1};
  uint64_t seed = 1234;
  int sample_index = 0;

  RowFixture() : logits(kVocab) {
    // Distinct, non-zero logits; token 5 is the argmax.
    for (int i = 0; i < kVocab; ++i) logits[i] = std::sin(0.7f * i) * 2.0f;
    logits[5] = 6.0f;
  }
  SamplingRow Row() const {
    return {logits.data(), &params, &tokens, num_prompt, seed, sample_index, &eos};
  }
};

TEST(SamplerTest, GreedyIsArgmax) {
  Sampler s(kVocab);
  RowFixture f;
  f.params.temperature = 0;
  EXPECT_EQ(s.Sample(f.Row()).token_id, 5);
}

TEST(SamplerTest, CounterUniformRangeAndStreams) {
  double sum = 0;
  for (int i = 0; i < 10000; ++i) {
    double u = CounterUniform(7, 0, i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / 10000, 0.5, 0.02);
  EXPECT_NE(CounterUniform(7, 0, 3), CounterUniform(7, 1, 3));
  EXPECT_NE(CounterUniform(7, 0, 3), CounterUniform(8, 0, 3));
  EXPECT_EQ(CounterUniform(7, 2, 3), CounterUniform(7, 2, 3));
}

TEST(SamplerTest, SeedDeterminismIndependentOfOtherRows) {
  RowFixture f;
  f.params.temperature = 1.5f;
  Sampler a(kVocab), b(kVocab);
  const int32_t alone = a.Sample(f.Row()).token_id;
  // Interleave other rows (other requests, other knobs) through the same sampler.
  RowFixture other;
  other.params.temperature = 0.8f;
  other.params.top_k = 3;
  other.params.repetition_penalty = 1.3f;
  other.seed = 99;
  for (int i = 0; i < 5; ++i) b.Sample(other.Row());
  EXPECT_EQ(b.Sample(f.Row()).token_id, alone);
}

TEST(SamplerTest, TemperatureSamplingMatchesSoftmax) {
  Sampler s(kVocab);
  RowFixture f;
  std::fill(f.logits.begin(), f.logits.end(), -50.0f);
  f.logits[3] = 0.0f;
  f.logits[8] = std::log(3.0f);  // p(8) = 0.75, p(3) = 0.25
  f.params.temperature = 1.0f;
  std::map<int, int> counts;
  const int trials = 4000;
  for (int i = 0; i < trials; ++i) {
    f.sample_index = i;  // independent streams
    ++counts[s.Sample(f.Row()).token_id];
  }
  EXPECT_EQ(counts.size(), 2u);
  EXPECT_NEAR(counts[8] / double(trials), 0.75, 0.03);
  // Low temperature sharpens towards the argmax.
  f.params.temperature = 0.1f;
  counts.clear();
  for (int i = 0; i < 500; ++i) {
    f.sample_index = i;
    ++counts[s.Sample(f.Row()).token_id];
  }
  EXPECT_GE(counts[8], 495);
}

TEST(SamplerTest, TopKTopPMinP) {
  Sampler s(kVocab);
  RowFixture f;
  f.params.temperature = 5.0f;  // flat: without filters many tokens appear
  std::map<int, int> base;
  for (int i = 0; i < 300; ++i) {
    f.sample_index = i;
    ++base[s.Sample(f.Row()).token_id];
  }
  EXPECT_GT(base.size(), 10u);

  // top_k = 1 is greedy whatever the temperature.
  f.params.top_k = 1;
  for (int i = 0; i < 50; ++i) {
    f.sample_index = i;
    EXPECT_EQ(s.Sample(f.Row()).token_id, 5);
  }
  // top_k = 3 draws only from the 3 largest logits.
  f.params.top_k = 3;
  std::vector<int> order(kVocab);
  for (int i = 0; i < kVocab; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](int a, int b) { return f.logits[a] > f.logits[b]; });
  std::map<int, int> got;
  for (int i = 0; i < 300; ++i) {
    f.sample_index = i;
    ++got[s.Sample(f.Row()).token_id];
  }
  EXPECT_EQ(got.size(), 3u);
  for (auto& [t, c] : got) EXPECT_TRUE(t == order[0] || t == order[1] || t == order[2]) << t;

  // A tiny top_p keeps only the most likely token.
  f.params.top_k = 0;
  f.params.top_p = 0.01f;
  for (int i = 0; i < 50; ++i) {
    f.sample_index = i;
    EXPECT_EQ(s.Sample(f.Row()).token_id, 5);
  }
  // min_p = 1 keeps only tokens as likely as the best.
  f.params.top_p = 1.0f;
  f.params.min_p = 1.0f;
  for (int i = 0; i < 50; ++i) {
    f.sample_index = i;
    EXPECT_EQ(s.Sample(f.Row()).token_id, 5);
  }
  // min_p = 0.5 at temperature 1: tokens within log(2) of the best survive.
  f.params.temperature = 1.0f;
  f.params.min_p = 0.5f;
  std::fill(f.logits.begin(), f.logits.end(), -10.0f);
  f.logits[5] = 1.0f;
  f.logits[6] = 0.5f;   // p ratio e^-0.5 = 0.61 -> kept
  f.logits[7] = -0.5f;  // ratio e^-1.5 = 0.22 -> dropped
  got.clear();
  for (int i = 0; i < 400; ++i) {
    f.sample_index = i;
    ++got[s.Sample(f.Row()).token_id];
  }
  EXPECT_EQ(got.size(), 2u);
  EXPECT_GT(got[6], 0);
  EXPECT_EQ(got.count(7), 0u);
}

TEST(SamplerTest, RepetitionPenaltyAppliesToPromptAndOutput) {
  Sampler s(kVocab);
  RowFixture f;
  f.params.temperature = 0;
  std::fill(f.logits.begin(), f.logits.end(), 0.0f);
  f.logits[2] = 3.0f;   // in the prompt
  f.logits[10] = 2.0f;  // never seen
  EXPECT_EQ(s.Sample(f.Row()).token_id, 2);
  f.params.repetition_penalty = 2.0f;  // 3 / 2 = 1.5 < 2
  EXPECT_EQ(s.Sample(f.Row()).token_id, 10);
  // Negative logits are multiplied (pushed further down).
  f.logits[10] = -1.0f;
  f.logits[2] = -0.6f;  // * 2 = -1.2 < -1
  f.logits[0] = -5;
  std::fill(f.logits.begin() + 11, f.logits.end(), -5.0f);
  for (int i = 3; i < 10; ++i) f.logits[i] = -5.0f;
  f.logits[1] = -5.0f;
  EXPECT_EQ(s.Sample(f.Row()).token_id, 10);
}

TEST(SamplerTest, PresenceAndFrequencyPenaltiesCountOnlyOutput) {
  Sampler s(kVocab);
  RowFixture f;
  f.params.temperature = 0;
  std::fill(f.logits.begin(), f.logits.end(), 0.0f);
  f.logits[2] = 1.0f;  // prompt token: presence penalty must not touch it
  f.logits[20] = 1.5f;
  f.logits[21] = 0.9f;
  f.tokens = {1, 2, 3, 20, 20};  // two generated 20s
  f.params.presence_penalty = 0.2f;
  EXPECT_EQ(s.Sample(f.Row()).token_id, 20);  // 1.5 - 0.2 = 1.3 > 1
  f.params.frequency_penalty = 0.2f;          // 1.5 - 0.2 - 0.4 = 0.9 < 1
  EXPECT_EQ(s.Sample(f.Row()).token_id, 2);
  // Scratch state does not leak between rows: the same row again gives the same answer.
  EXPECT_EQ(s.Sample(f.Row()).token_id, 2);
  f.params.presence_penalty = 0;
  f.params.frequency_penalty = 0;
  EXPECT_EQ(s.Sample(f.Row()).token_id, 20);
}

TEST(SamplerTest, LogitBias) {
  Sampler s(kVocab);
  RowFixture f;
  f.params.temperature = 0;
  f.params.logit_bias = {{11, 100.0f}};
  EXPECT_EQ(s.Sample(f.Row()).token_id, 11);
  f.params.logit_bias = {{5, -100.0f}};
  EXPECT_NE(s.Sample(f.Row()).token_id, 5);
}

TEST(SamplerTest, MinTokensMasksEosAndStopTokens) {
  Sampler s(kVocab);
  RowFixture f;
  f.params.temperature = 0;
  f.logits[kVocab - 1] = 100.0f;  // EOS is the argmax
  f.logits[12] = 90.0f;           // a stop token id is second
  f.params.stop_token_ids = {12};
  f.params.min_tokens = 2;
  EXPECT_EQ(s.Sample(f.Row()).token_id, 5);
  f.tokens.push_back(5);
  EXPECT_EQ(s.Sample(f.Row()).token_id, 5);  // 1 generated < 2
  f.tokens.push_back(5);
  EXPECT_EQ(s.Sample(f.Row()).token_id, kVocab - 1);
  // ignore_eos leaves EOS unmasked (the engine will not stop on it either).
  f.tokens.resize(3);
  f.params.ignore_eos = true;
  EXPECT_EQ(s.Sample(f.Row()).token_id, kVocab - 1);
}

TEST(SamplerTest, LogprobsAndTopAlternatives) {
  Sampler s(kVocab);
  RowFixture f;
  f.params.temperature = 0;
  f.params.logprobs = 4;
  SampleResult r = s.Sample(f.Row());
  double lse = 0;
  for (float l : f.logits) lse += std::exp(double(l));
  lse = std::log(lse);
  EXPECT_NEAR(r.logprobs.logprob, f.logits[5] - lse, 1e-4);
  ASSERT_EQ(r.logprobs.top.size(), 4u);
  EXPECT_EQ(r.logprobs.top[0].token_id, 5);
  for (int i = 1; i < 4; ++i) {
    EXPECT_LE(r.logprobs.top[i].logprob, r.logprobs.top[i - 1].logprob);
    EXPECT_NEAR(r.logprobs.top[i].logprob, f.logits[r.logprobs.top[i].token_id] - lse, 1e-4);
  }
  f.params.logprobs = 0;
  r = s.Sample(f.Row());
  EXPECT_TRUE(r.logprobs.top.empty());
  EXPECT_NEAR(r.logprobs.logprob, f.logits[5] - lse, 1e-4);
}

// Structured output: tokens outside the bitmask are -inf before everything else, so the draw,
// greedy and the logprobs (normalized over the allowed tokens) only see the allowed ones.
TEST(SamplerTest, AllowedBitmaskMasksBeforeEverythingElse) {
  Sampler s(kVocab);
  RowFixture f;
  std::vector<uint32_t> mask((kVocab + 31) / 32, 0);
  const std::vector<int32_t> allowed = {3, 11, 33, 36};
  for (int32_t t : allowed) mask[t / 32] |= uint32_t{1} << (t % 32);
  SamplingRow row = f.Row();
  row.allowed_bitmask = mask.data();
  f.params.temperature = 0;
  f.params.logprobs = 5;
  int32_t best = allowed[0];
  for (int32_t t : allowed) best = f.logits[t] > f.logits[best] ? t : best;
  SampleResult r = s.Sample(row);
  EXPECT_EQ(r.token_id, best);
  double lse = 0;
  for (int32_t t : allowed) lse += std::exp(double(f.logits[t]));
  lse = std::log(lse);
  EXPECT_NEAR(r.logprobs.logprob, f.logits[best] - lse, 1e-4);
  // Only the allowed tokens have finite top logprobs; the rest of the list is -inf.
  ASSERT_EQ(r.logprobs.top.size(), 5u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_NE(std::find(allowed.begin(), allowed.end(), r.logprobs.top[i].token_id), allowed.end());
  }
  EXPECT_TRUE(std::isinf(r.logprobs.top[4].logprob));
  // A bias cannot bring a disallowed token back (-inf + 100 = -inf).
  f.params.logit_bias = {{5, 100.0f}};
  EXPECT_EQ(s.Sample(row).token_id, best);
  f.params.logit_bias.clear();
  // Temperature sampling draws only allowed tokens.
  f.params.temperature = 2.0f;
  f.params.logprobs = -1;
  std::map<int32_t, int> seen;
  for (int i = 0; i < 400; ++i) {
    f.seed = 1000 + i;
    row.seed = f.seed;
    ++seen[s.Sample(row).token_id];
  }
  for (const auto& [t, c] : seen) {
    EXPECT_NE(std::find(allowed.begin(), allowed.end(), t), allowed.end()) << t;
  }
  EXPECT_EQ(seen.size(), allowed.size());
}

// The caller folds min_tokens into the bitmask; the sampler does not mask EOS again (the
// engine's "grammar wins" when only EOS is allowed). A row allowing nothing is deterministic.
TEST(SamplerTest, AllowedBitmaskReplacesMinTokensAndAllDisallowedIsDeterministic) {
  Sampler s(kVocab);
  RowFixture f;
  f.params.temperature = 0;
  f.params.min_tokens = 5;
  std::vector<uint32_t> mask((kVocab + 31) / 32, 0);
  mask[(kVocab - 1) / 32] |= uint32_t{1} << ((kVocab - 1) % 32);  // only EOS
  SamplingRow row = f.Row();
  row.allowed_bitmask = mask.data();
  EXPECT_EQ(s.Sample(row).token_id, kVocab - 1);
  std::fill(mask.begin(), mask.end(), 0u);
  for (float t : {0.0f, 1.0f}) {
    f.params.temperature = t;
    f.params.top_k = t == 0.0f ? 0 : 3;
    const int32_t a = s.Sample(row).token_id;
    EXPECT_EQ(a, s.Sample(row).token_id);
    EXPECT_GE(a, 0);
    EXPECT_LT(a, kVocab);
  }
  f.params.temperature = 0;
  f.params.top_k = 0;
  EXPECT_EQ(s.Sample(row).token_id, 0);  // greedy over all -inf: the first index
}

TEST(ValidateSamplingParamsTest, ErrorsNameTheField) {
  auto msg = [](SamplingParams p) {
    return std::string(ValidateSamplingParams(p, kVocab, false).message());
  };
  SamplingParams p;
  EXPECT_TRUE(ValidateSamplingParams(p, kVocab, false).ok());
  p.temperature = -1;
  EXPECT_EQ(msg(p), "temperature must be >= 0, got -1");
  p = {};
  p.top_p = 0;
  EXPECT_NE(msg(p).find("top_p"), std::string::npos);
  p = {};
  p.top_k = -2;
  EXPECT_NE(msg(p).find("top_k"), std::string::npos);
  p = {};
  p.min_p = 1.5f;
  EXPECT_NE(msg(p).find("min_p"), std::string::npos);
  p = {};
  p.repetition_penalty = 0;
  EXPECT_NE(msg(p).find("repetition_penalty"), std::string::npos);
  p = {};
  p.presence_penalty = 3;
  EXPECT_NE(msg(p).find("presence_penalty"), std::string::npos);
  p = {};
  p.frequency_penalty = -3;
  EXPECT_NE(msg(p).find("frequency_penalty"), std::string::npos);
  p = {};
  p.n = 0;
  EXPECT_NE(msg(p).find("n must"), std::string::npos);
  p = {};
  p.max_tokens = 0;
  EXPECT_NE(msg(p).find("max_tokens"), std::string::npos);
  p = {};
  p.min_tokens = 20;
  EXPECT_NE(msg(p).find("min_tokens"), std::string::npos);
  p = {};
  p.logit_bias = {{kVocab, 1.0f}};
  EXPECT_NE(msg(p).find("logit_bias"), std::string::npos);
  p = {};
  p.logprobs = 50;
  EXPECT_NE(msg(p).find("logprobs"), std::string::npos);
  p = {};
  p.stop_token_ids = {-1};
  EXPECT_NE(msg(p).find("stop_token_ids"), std::string::npos);
  p = {};
  p.stop = {"###"};
  EXPECT_NE(msg(p).find("text decoder"), std::string::npos);
  EXPECT_TRUE(ValidateSamplingParams(p, kVocab, true).ok());
}

}  // namespace
}  // namespace muse::engine
