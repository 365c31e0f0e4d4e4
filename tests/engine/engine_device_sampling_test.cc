// Issue #14 end to end: the real engine on the CUDA runner (emulated in CI: every kernel, cuBLAS
// call and CUDA graph runs on the CPU) samples on the device (ModelRunner::ForwardAndSample) and,
// with RunnerOptions::device_sampling off, on the host (engine::Sampler) from the same logits.
// Both must give IDENTICAL token ids and logprob bits for seeded and unseeded temperature sampling
// with top-k / top-p / min-p, penalties, logit_bias, min_tokens, stop ids, logprobs, n > 1 (the
// fork), greedy, structured output (grammar bitmasks computed while the forward pass runs,
// min_tokens folded into them), with requests arriving mid-run so the batch composition keeps
// changing.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "models/testing/random_checkpoint.h"
#include "src/engine/engine_core.h"
#include "src/runtime/cuda/cuda_model_runner.h"
#include "tests/engine/engine_test_model.h"
#include "tests/engine/structured_test_grammars.h"

namespace muse::engine {
namespace {

constexpr int kVocab = 512;
constexpr int kEos = 2;

models::ModelConfig TestConfig() {
  return testing::SmallLlamaConfig(kVocab, 172, "bfloat16", kEos);
}

std::string ModelDir() {
  static const std::string dir =
      testing::WriteTestModel("muse_engine_device_sampling_", TestConfig(),
                              {.seed = 17, .dtype = models::DType::kBFloat16});
  return dir;
}

// Structured output: grammars over the test byte vocabulary of this model's size.
struct Grammars {
  std::shared_ptr<const structured::CompiledGrammar> object, digits, literal;
};
const Grammars& TestGrammars() {
  static const Grammars g{testing::CompileForTest(testing::ObjectGrammar(), kVocab, kEos),
                          testing::CompileForTest(testing::DigitsGrammar(), kVocab, kEos),
                          testing::CompileForTest(testing::LiteralGrammar("abc-42"), kVocab, kEos)};
  return g;
}

// Thinking budget: ids standing for "</think>" and "\n\n".
const std::vector<int32_t> kThinkEnd = {300, 301};
const std::vector<int32_t> kThinkSuffix = {302};

std::vector<int32_t> Prompt(int len, int seed) { return testing::RandomPrompt(len, seed, kVocab); }

Request Req(const std::string& id, int prompt_len, int max_tokens, float temperature) {
  Request r;
  r.id = id;
  r.prompt_token_ids = Prompt(prompt_len, static_cast<int>(std::hash<std::string>{}(id) % 1000));
  r.sampling.max_tokens = max_tokens;
  r.sampling.temperature = temperature;
  return r;
}

// Requests added before the first step, and after step 3 and step 7.
std::vector<std::vector<Request>> Waves() {
  std::vector<Request> first, second, third;
  Request r = Req("greedy", 20, 12, 0.0f);
  r.sampling.logprobs = 5;
  first.push_back(r);
  r = Req("topk_topp", 33, 16, 0.9f);
  r.sampling.top_k = 20;
  r.sampling.top_p = 0.9f;
  r.sampling.seed = 11;
  r.sampling.logprobs = 5;
  first.push_back(r);
  r = Req("minp_penalties", 17, 16, 1.2f);
  r.sampling.min_p = 0.05f;
  r.sampling.repetition_penalty = 1.3f;
  r.sampling.presence_penalty = 0.5f;
  r.sampling.frequency_penalty = 0.4f;
  r.sampling.seed = 12;
  r.sampling.logprobs = 5;
  first.push_back(r);
  r = Req("bias_min_tokens", 9, 12, 1.0f);
  r.sampling.logit_bias = {{kEos, 6.0f}, {17, 3.0f}, {17, 1.0f}, {40, -5.0f}};
  r.sampling.min_tokens = 5;
  r.sampling.seed = 13;
  r.sampling.logprobs = 5;
  first.push_back(r);
  r = Req("grammar_object_n2", 14, 40, 1.0f);
  r.sampling.grammar = TestGrammars().object;
  r.sampling.n = 2;
  r.sampling.seed = 21;
  r.sampling.logprobs = 5;
  first.push_back(r);
  r = Req("n3", 21, 8, 1.0f);
  r.sampling.n = 3;
  r.sampling.seed = 14;
  r.sampling.logprobs = 5;
  r.sampling.repetition_penalty = 1.1f;
  second.push_back(r);
  r = Req("unseeded", 5, 10, 0.8f);  // seed drawn from EngineOptions::seed
  r.sampling.logprobs = 0;
  second.push_back(r);
  r = Req("grammar_digits_min_tokens", 10, 14, 0.8f);
  r.sampling.grammar = TestGrammars().digits;
  r.sampling.min_tokens = 4;  // folded into the mask: EOS only from the 5th token on
  r.sampling.logit_bias = {{kEos, 5.0f}};
  r.sampling.top_k = 10;
  r.sampling.seed = 22;
  r.sampling.logprobs = 3;
  second.push_back(r);
  r = Req("long_prompt", 150, 6, 0.0f);  // prefilled in chunks
  third.push_back(r);
  r = Req("stop_ids", 12, 14, 0.7f);
  r.sampling.top_k = 5;
  r.sampling.min_tokens = 3;
  r.sampling.ignore_eos = true;
  r.sampling.stop_token_ids = {3, 4, 5, 6, 7, 8};
  r.sampling.frequency_penalty = -0.7f;
  r.sampling.seed = 15;
  r.sampling.logprobs = 20;
  third.push_back(r);
  r = Req("grammar_literal_greedy", 7, 20, 0.0f);
  r.sampling.grammar = TestGrammars().literal;
  r.sampling.logprobs = 3;
  third.push_back(r);
  // Thinking budget (issue #18): the end tag forced through the same bitmask path, also over
  // min_tokens masking the forced id (a stop token id).
  r = Req("thinking_n2", 13, 16, 1.0f);
  r.sampling.thinking = ThinkingBudget{.budget = 4,
                                       .starts_inside = true,
                                       .end_token_ids = kThinkEnd,
                                       .forced_suffix_token_ids = kThinkSuffix};
  r.sampling.n = 2;
  r.sampling.seed = 23;
  r.sampling.min_tokens = 8;
  r.sampling.stop_token_ids = {kThinkEnd[0]};
  r.sampling.logprobs = 2;
  second.push_back(r);
  r = Req("thinking_budget0_greedy", 11, 8, 0.0f);
  r.sampling.thinking = ThinkingBudget{.budget = 0,
                                       .starts_inside = true,
                                       .end_token_ids = kThinkEnd,
                                       .forced_suffix_token_ids = kThinkSuffix};
  r.sampling.logprobs = 3;
  third.push_back(r);
  return {first, second, third};
}

struct Sample {
  std::vector<int32_t> tokens;
  std::vector<TokenLogprobs> logprobs;
  std::string finish;
};
using Results = std::map<std::string, std::map<int, Sample>>;

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

Results RunEngine(bool device_sampling) {
  runtime::RunnerOptions o;
  o.model_dir = ModelDir();
  o.device = "cuda";
  o.dtype = "bfloat16";
  o.num_kv_blocks = 96;
  o.device_sampling = device_sampling;
  auto runner = runtime::CudaModelRunner::Create(o);
  EXPECT_TRUE(runner.ok()) << runner.status();
  if (!runner.ok()) return {};
  EXPECT_EQ((*runner)->SamplesOnDevice(), device_sampling);
  EngineOptions eo;
  eo.seed = 99;
  eo.sampling_threads = 1;
  eo.scheduler.max_num_batched_tokens = 64;  // chunked prefills beside decodes
  auto core = EngineCore::Create(runner->get(), eo);
  EXPECT_TRUE(core.ok()) << core.status();
  if (!core.ok()) return {};
  std::map<std::string, std::shared_ptr<OutputStream>> streams;
  const auto waves = Waves();
  const std::map<int, int> add_at = {{0, 0}, {3, 1}, {7, 2}};
  Results out;
  auto drain = [&] {
    for (auto& [id, s] : streams) {
      while (auto m = s->TryNext()) {
        EXPECT_TRUE(m->error.ok()) << id << ": " << m->error;
        for (auto& d : m->samples) {
          Sample& smp = out[id][d.index];
          smp.tokens.insert(smp.tokens.end(), d.token_ids.begin(), d.token_ids.end());
          smp.logprobs.insert(smp.logprobs.end(), d.logprobs.begin(), d.logprobs.end());
          if (d.finish_reason)
            smp.finish = std::to_string(static_cast<int>(*d.finish_reason)) + d.stop_reason;
        }
      }
    }
  };
  for (int step = 0; step < 400; ++step) {
    if (auto it = add_at.find(step); it != add_at.end()) {
      for (const Request& r : waves[it->second]) {
        auto s = std::make_shared<OutputStream>(r.id);
        streams[r.id] = s;
        EXPECT_TRUE((*core)->AddRequest(r, s).ok());
      }
    }
    if (step > 7 && !(*core)->HasWork()) break;
    EXPECT_TRUE((*core)->Step().ok());
    EXPECT_TRUE((*core)->CheckInvariants().ok());
    drain();
  }
  EXPECT_FALSE((*core)->HasWork());
  EXPECT_EQ((*core)->Stats().requests_failed, 0);
  return out;
}

TEST(EngineDeviceSampling, DeviceAndHostSamplingGiveIdenticalTokensAndLogprobs) {
  if (!runtime::CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  const Results dev = RunEngine(true);
  const Results host = RunEngine(false);
  ASSERT_EQ(dev.size(), 13u);
  ASSERT_EQ(host.size(), dev.size());
  int sampled_not_greedy = 0;
  for (const auto& [id, samples] : host) {
    ASSERT_TRUE(dev.contains(id)) << id;
    const auto& d = dev.at(id);
    ASSERT_EQ(d.size(), samples.size()) << id;
    for (const auto& [index, h] : samples) {
      SCOPED_TRACE(id + " sample " + std::to_string(index));
      const Sample& g = d.at(index);
      EXPECT_FALSE(h.tokens.empty());
      EXPECT_EQ(g.tokens, h.tokens);
      EXPECT_EQ(g.finish, h.finish);
      ASSERT_EQ(g.logprobs.size(), h.logprobs.size());
      for (size_t t = 0; t < h.logprobs.size(); ++t) {
        EXPECT_EQ(Bits(g.logprobs[t].logprob), Bits(h.logprobs[t].logprob)) << "token " << t;
        ASSERT_EQ(g.logprobs[t].top.size(), h.logprobs[t].top.size()) << "token " << t;
        for (size_t j = 0; j < h.logprobs[t].top.size(); ++j) {
          EXPECT_EQ(g.logprobs[t].top[j].token_id, h.logprobs[t].top[j].token_id);
          EXPECT_EQ(Bits(g.logprobs[t].top[j].logprob), Bits(h.logprobs[t].top[j].logprob));
        }
        // A sampled (not the top-1) token: the draw really ran.
        if (!h.logprobs[t].top.empty() && h.logprobs[t].top[0].token_id != h.tokens[t])
          ++sampled_not_greedy;
      }
    }
  }
  EXPECT_GT(sampled_not_greedy, 0);
  // The knobs did what they say (on both paths, as the results are identical).
  const auto& bias = host.at("bias_min_tokens").at(0).tokens;
  ASSERT_GE(bias.size(), 5u);  // eos masked for the first 5 tokens
  for (size_t i = 0; i < 5; ++i) EXPECT_NE(bias[i], kEos) << i;
  const auto& stops = host.at("stop_ids").at(0).tokens;
  ASSERT_GE(stops.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(stops[i] < 3 || stops[i] > 8) << i;
  EXPECT_EQ(host.at("n3").size(), 3u);
  // Constrained requests (identical on both paths, above): in their grammar's language.
  const Grammars& g = TestGrammars();
  for (const auto& [id, grammar, max_tokens] :
       {std::tuple{"grammar_object_n2", g.object, 40},
        std::tuple{"grammar_digits_min_tokens", g.digits, 14},
        std::tuple{"grammar_literal_greedy", g.literal, 20}}) {
    for (const auto& [index, s] : host.at(id)) {
      std::optional<FinishReason> finish;  // Sample::finish is the reason's number + stop_reason
      if (!s.finish.empty()) finish = static_cast<FinishReason>(s.finish[0] - '0');
      testing::ExpectInLanguage(grammar, s.tokens, finish, max_tokens,
                                std::string(id) + " sample " + std::to_string(index));
    }
  }
  EXPECT_EQ(host.at("grammar_object_n2").size(), 2u);
  const auto& digits = host.at("grammar_digits_min_tokens").at(0).tokens;
  ASSERT_GE(digits.size(), 5u);
  for (size_t i = 0; i < 4; ++i) EXPECT_NE(digits[i], kEos) << i;
  EXPECT_EQ(testing::GrammarBytes(*g.literal, host.at("grammar_literal_greedy").at(0).tokens),
            "abc-42");
  EXPECT_EQ(host.at("greedy").at(0).logprobs.size(), 12u);
  // Thinking budget: the end tag and suffix right after the budget, in every sample.
  const std::vector<int32_t> forced = {kThinkEnd[0], kThinkEnd[1], kThinkSuffix[0]};
  ASSERT_EQ(host.at("thinking_n2").size(), 2u);
  for (const auto& [index, s] : host.at("thinking_n2")) {
    ASSERT_GE(s.tokens.size(), 7u) << index;
    EXPECT_EQ(std::vector<int32_t>(s.tokens.begin() + 4, s.tokens.begin() + 7), forced) << index;
  }
  const auto& b0 = host.at("thinking_budget0_greedy").at(0).tokens;
  ASSERT_GE(b0.size(), 3u);
  EXPECT_EQ(std::vector<int32_t>(b0.begin(), b0.begin() + 3), forced);
}

}  // namespace
}  // namespace muse::engine
