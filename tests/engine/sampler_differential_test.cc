// The batched, fused sampler (src/engine/sampler.cc) against the previous implementation kept as
// the oracle (reference_sampler.cc): thousands of random rows over every knob, ties, -inf and
// NaN entries, odd and even vocabularies and one 128k row; token ids and logprobs must match bit
// for bit, from Sample() and from SampleBatch() on 1 and 2 threads.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "src/engine/sampler.h"
#include "tests/engine/reference_sampler.h"

namespace muse::engine {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

struct Case {
  std::vector<float> logits;
  SamplingParams params;
  std::vector<int32_t> tokens;
  int num_prompt = 0;
  uint64_t seed = 0;
  int sample_index = 0;
  std::vector<uint32_t> allowed;  // structured output's bitmask, empty = none
  SamplingRow Row(const std::vector<int64_t>* eos) const {
    return {logits.data(), &params,      &tokens, num_prompt,
            seed,          sample_index, eos,     allowed.empty() ? nullptr : allowed.data()};
  }
};

class Generator {
 public:
  explicit Generator(uint32_t seed) : rng_(seed) {}

  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  float UniformF(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng_); }
  bool Coin(double p) { return std::bernoulli_distribution(p)(rng_); }

  std::vector<float> Logits(int V, bool allow_nan) {
    std::vector<float> l(V);
    const int mode = Uniform(0, 7);
    const float scale = std::array<float, 4>{0.5f, 3.0f, 20.0f, 1e-3f}[Uniform(0, 3)];
    std::normal_distribution<float> nd(0.0f, scale);
    for (int i = 0; i < V; ++i) {
      switch (mode) {
        case 0:  // quantized: many exact ties
          l[i] = std::round(nd(rng_) * 2.0f) * 0.5f;
          break;
        case 1:  // few distinct values
          l[i] = static_cast<float>(Uniform(0, 3));
          break;
        case 2:  // all equal
          l[i] = 1.25f;
          break;
        default:
          l[i] = nd(rng_);
      }
    }
    if (Coin(0.3)) {  // -inf entries (masked tokens)
      const int n = Uniform(1, std::max(1, V / 4));
      for (int i = 0; i < n; ++i) l[Uniform(0, V - 1)] = -kInf;
    }
    if (Coin(0.05)) {
      for (float& x : l) x = -kInf;  // every token masked
    }
    if (Coin(0.3)) {  // duplicated maxima
      float mx = -kInf;
      for (float x : l) mx = std::max(mx, x);
      if (std::isinf(mx)) mx = 0.0f;
      const int n = Uniform(1, 4);
      for (int i = 0; i < n; ++i) l[Uniform(0, V - 1)] = mx + (Coin(0.5) ? 0.0f : 1.0f);
    }
    if (Coin(0.1)) {  // zeros of both signs at the top
      for (int i = 0; i < V; ++i) l[i] = std::min(l[i], -1.0f);
      l[Uniform(0, V - 1)] = 0.0f;
      l[Uniform(0, V - 1)] = -0.0f;
    }
    if (allow_nan && Coin(0.05)) l[Uniform(0, V - 1)] = std::numeric_limits<float>::quiet_NaN();
    if (allow_nan && Coin(0.03)) l[Uniform(0, V - 1)] = kInf;
    return l;
  }

  Case Make(int V, bool allow_nan) {
    Case c;
    c.logits = Logits(V, allow_nan);
    SamplingParams& p = c.params;
    const float temps[] = {0.0f, 0.0f, 0.3f, 0.8f, 1.0f, 1.0f, 2.0f};
    p.temperature = temps[Uniform(0, 6)];
    if (Coin(0.5)) {
      const int ks[] = {0, -1, 1, 5, 50, V - 1, V, V + 3};
      p.top_k = ks[Uniform(0, 7)];
      if (p.top_k == 0 && V > 1) p.top_k = Uniform(1, V);
    }
    if (Coin(0.5)) p.top_p = Coin(0.2) ? 1.0f : UniformF(0.1f, 1.0f);
    if (Coin(0.3)) {
      const float mps[] = {0.05f, 0.3f, 1.0f, 1e-6f};
      p.min_p = Coin(0.5) ? mps[Uniform(0, 3)] : UniformF(0.0f, 1.0f);
    }
    if (Coin(0.3)) p.repetition_penalty = Coin(0.5) ? UniformF(0.5f, 2.0f) : 1.3f;
    if (Coin(0.3)) p.presence_penalty = UniformF(-2.0f, 2.0f);
    if (Coin(0.3)) p.frequency_penalty = UniformF(-2.0f, 2.0f);
    if (Coin(0.3)) {
      const int n = Uniform(1, 5);
      for (int i = 0; i < n; ++i) {
        p.logit_bias.push_back({Uniform(-1, V), Coin(0.2) ? -kInf : UniformF(-100.0f, 100.0f)});
      }
    }
    const int logprobs[] = {-1, -1, 0, 5, 20};
    p.logprobs = logprobs[Uniform(0, 4)];
    // Prompt + generated tokens with repeats (penalties), some out of range ids.
    c.num_prompt = Uniform(1, 40);
    const int generated = Uniform(0, 30);
    const int distinct = Uniform(1, std::min(V, 12));
    for (int i = 0; i < c.num_prompt + generated; ++i) {
      c.tokens.push_back(Coin(0.02) ? V + 5 : Uniform(0, distinct - 1) * (V / distinct));
    }
    if (Coin(0.3)) {
      p.min_tokens = Uniform(0, 40);
      p.ignore_eos = Coin(0.3);
      if (Coin(0.5)) p.stop_token_ids = {Uniform(0, V - 1), Uniform(0, V)};
    }
    c.seed = rng_();
    c.sample_index = Uniform(0, 3);
    if (Coin(0.3)) {  // a grammar's bitmask: nothing, few, half or every token allowed
      const int density = Uniform(0, 3);
      c.allowed.assign((V + 31) / 32, 0);
      for (int i = 0; i < V; ++i) {
        const bool on = density == 3 || (density == 1 && Coin(0.05)) || (density == 2 && Coin(0.5));
        if (on) c.allowed[i / 32] |= uint32_t{1} << (i % 32);
      }
      if (Coin(0.2)) c.allowed.back() |= ~uint32_t{0};  // bits past the vocabulary are ignored
    }
    return c;
  }

 private:
  std::mt19937 rng_;
};

void ExpectSame(const SampleResult& want, const SampleResult& got, const std::string& what) {
  ASSERT_EQ(want.token_id, got.token_id) << what;
  ASSERT_EQ(Bits(want.logprobs.logprob), Bits(got.logprobs.logprob)) << what;
  ASSERT_EQ(want.logprobs.top.size(), got.logprobs.top.size()) << what;
  for (size_t i = 0; i < want.logprobs.top.size(); ++i) {
    ASSERT_EQ(want.logprobs.top[i].token_id, got.logprobs.top[i].token_id) << what << " top " << i;
    ASSERT_EQ(Bits(want.logprobs.top[i].logprob), Bits(got.logprobs.top[i].logprob))
        << what << " top " << i;
  }
}

// `rows` random rows of vocabulary V through the reference, Sample() and SampleBatch().
void RunBatch(Generator& gen, int V, int rows, bool allow_nan, kernels::cpu::ThreadPool* pool) {
  std::vector<Case> cases;
  cases.reserve(rows);
  for (int i = 0; i < rows; ++i) cases.push_back(gen.Make(V, allow_nan));
  const std::vector<int64_t> eos{gen.Uniform(0, V - 1), -3};
  std::vector<SamplingRow> batch;
  std::vector<SampleResult> want;
  testing::ReferenceSampler ref(V);
  for (const Case& c : cases) {
    batch.push_back(c.Row(&eos));
    want.push_back(ref.Sample(batch.back()));
  }
  Sampler one(V), serial(V), threaded(V);
  std::vector<SampleResult> got_serial(rows), got_threaded(rows);
  serial.SampleBatch(batch, got_serial, nullptr);
  threaded.SampleBatch(batch, got_threaded, pool);
  for (int i = 0; i < rows; ++i) {
    const std::string what = "V=" + std::to_string(V) + " row " + std::to_string(i) +
                             " T=" + std::to_string(cases[i].params.temperature) +
                             " k=" + std::to_string(cases[i].params.top_k) +
                             " p=" + std::to_string(cases[i].params.top_p) +
                             " min_p=" + std::to_string(cases[i].params.min_p) +
                             " logprobs=" + std::to_string(cases[i].params.logprobs);
    ExpectSame(want[i], one.Sample(batch[i]), what + " Sample");
    ExpectSame(want[i], got_serial[i], what + " SampleBatch(1 thread)");
    ExpectSame(want[i], got_threaded[i], what + " SampleBatch(2 threads)");
  }
}

TEST(SamplerDifferentialTest, RandomRowsSmallVocabularies) {
  Generator gen(20240914);
  kernels::cpu::ThreadPool pool(2);
  const int fixed[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 255, 256, 257, 511, 512, 513, 1000, 4096};
  for (int V : fixed) {
    RunBatch(gen, V, 40, /*allow_nan=*/false, &pool);
    if (HasFatalFailure()) return;
  }
  for (int i = 0; i < 80; ++i) {
    RunBatch(gen, gen.Uniform(1, 5000), 40, /*allow_nan=*/false, &pool);
    if (HasFatalFailure()) return;
  }
}

TEST(SamplerDifferentialTest, NanAndInfRows) {
  Generator gen(77);
  kernels::cpu::ThreadPool pool(2);
  for (int i = 0; i < 40; ++i) {
    RunBatch(gen, gen.Uniform(1, 3000), 30, /*allow_nan=*/true, &pool);
    if (HasFatalFailure()) return;
  }
}

TEST(SamplerDifferentialTest, NearTiesAndSmallTemperatures) {
  // Logits a few ulps apart and tiny / huge temperatures: exp rounding decides the order.
  Generator gen(5);
  kernels::cpu::ThreadPool pool(2);
  for (int V : {64, 300, 2049}) {
    std::vector<Case> cases;
    for (int r = 0; r < 60; ++r) {
      Case c = gen.Make(V, false);
      for (int i = 0; i < V; ++i)
        c.logits[i] = 10.0f + static_cast<float>(gen.Uniform(0, 8)) * 1e-6f;
      const float temps[] = {1e-4f, 0.01f, 0.3f, 50.0f, 1e-30f};
      c.params.temperature = temps[r % 5];
      cases.push_back(std::move(c));
    }
    const std::vector<int64_t> eos{0};
    testing::ReferenceSampler ref(V);
    Sampler s(V);
    std::vector<SamplingRow> batch;
    std::vector<SampleResult> want;
    for (const Case& c : cases) {
      batch.push_back(c.Row(&eos));
      want.push_back(ref.Sample(batch.back()));
    }
    std::vector<SampleResult> got(batch.size());
    s.SampleBatch(batch, got, &pool);
    for (size_t i = 0; i < batch.size(); ++i) {
      ExpectSame(want[i], got[i], "V=" + std::to_string(V) + " row " + std::to_string(i));
      if (HasFatalFailure()) return;
    }
  }
}

TEST(SamplerDifferentialTest, TopKThroughBlockMaxima) {
  // top_k <= vocab / 256 with a temperature: candidates come from the blocks' max logits (no exp
  // pass). Ties at the threshold, -inf, min_p and top_p on top.
  Generator gen(99);
  kernels::cpu::ThreadPool pool(2);
  for (int V : {2048, 2051, 9000, 33001}) {
    const int nb = V / 256;
    std::vector<Case> cases;
    for (int r = 0; r < 60; ++r) {
      Case c = gen.Make(V, false);
      const float temps[] = {0.3f, 0.8f, 1.0f, 2.0f, 0.05f};
      c.params.temperature = temps[r % 5];
      c.params.top_k = gen.Uniform(1, nb);
      cases.push_back(std::move(c));
    }
    const std::vector<int64_t> eos{1};
    testing::ReferenceSampler ref(V);
    Sampler s(V);
    std::vector<SamplingRow> batch;
    batch.reserve(cases.size());
    std::vector<SampleResult> want;
    for (const Case& c : cases) {
      batch.push_back(c.Row(&eos));
      want.push_back(ref.Sample(batch.back()));
    }
    std::vector<SampleResult> got(batch.size());
    s.SampleBatch(batch, got, &pool);
    for (size_t i = 0; i < batch.size(); ++i) {
      ExpectSame(want[i], got[i], "V=" + std::to_string(V) + " row " + std::to_string(i));
      if (HasFatalFailure()) return;
    }
  }
}

// Grammar bitmasks: few tokens (at most V / 32: the sparse
// path) as one token, a handful, a cluster inside one 256-block, ids in the row's last V % 8 (the
// dense tail), the whole allowance; and most tokens (the masked copy's dense path).
// Greedy and plain temperature, with -inf, ties and zeros among the allowed. Rows with other
// knobs (top-k / top-p, penalties, logprobs) take the masked copy.
TEST(SamplerDifferentialTest, SparseGrammarMasks) {
  Generator gen(4242);
  kernels::cpu::ThreadPool pool(2);
  for (int V : {1, 9, 33, 257, 1001, 4099, 33000, 128256}) {
    const int rows = V > 10000 ? 40 : 200;
    std::vector<Case> cases;
    for (int r = 0; r < rows; ++r) {
      Case c = gen.Make(V, /*allow_nan=*/r % 50 == 7);
      if (r % 4 != 3) {  // the sparse path's rows: no other knob
        c.params = SamplingParams{};
        const float temps[] = {0.0f, 0.3f, 1.0f, 1.0f, 2.0f};
        c.params.temperature = temps[gen.Uniform(0, 4)];
      }
      c.allowed.assign((V + 31) / 32, 0);
      auto allow = [&](int i) {
        if (i >= 0 && i < V) c.allowed[i / 32] |= uint32_t{1} << (i % 32);
      };
      const int limit = std::max(1, V / 32);
      switch (r % 6) {
        case 0:
          allow(gen.Uniform(0, V - 1));
          break;
        case 1:
          for (int i = gen.Uniform(1, std::min(8, limit)); i > 0; --i) allow(gen.Uniform(0, V - 1));
          break;
        case 2: {  // a cluster in one block
          const int b = gen.Uniform(0, (V - 1) / 256) * 256;
          for (int i = gen.Uniform(1, std::min(40, limit)); i > 0; --i)
            allow(b + gen.Uniform(0, 255));
          break;
        }
        case 3:  // the tail and the last block
          for (int i = gen.Uniform(1, std::min(6, limit)); i > 0; --i)
            allow(V - 1 - gen.Uniform(0, std::min(V - 1, 12)));
          break;
        case 4:
          for (int i = limit; i > 0; --i) allow(gen.Uniform(0, V - 1));
          break;
        default:  // most of the vocabulary (inside a string): the dense path
          for (int i = 0; i < V; ++i)
            if (gen.Coin(0.9)) allow(i);
      }
      if (gen.Coin(0.2)) c.allowed.back() |= ~uint32_t{0} << (V % 32 == 0 ? 31 : V % 32);
      cases.push_back(std::move(c));
    }
    const std::vector<int64_t> eos{0};
    testing::ReferenceSampler ref(V);
    Sampler s(V);
    std::vector<SamplingRow> batch;
    batch.reserve(cases.size());
    std::vector<SampleResult> want;
    for (const Case& c : cases) {
      batch.push_back(c.Row(&eos));
      want.push_back(ref.Sample(batch.back()));
    }
    std::vector<SampleResult> got(batch.size());
    s.SampleBatch(batch, got, &pool);
    for (size_t i = 0; i < batch.size(); ++i) {
      const std::string what = "V=" + std::to_string(V) + " row " + std::to_string(i) +
                               " T=" + std::to_string(cases[i].params.temperature);
      ExpectSame(want[i], got[i], what);
      ExpectSame(want[i], s.Sample(batch[i]), what + " Sample");
      if (HasFatalFailure()) return;
    }
  }
}

TEST(SamplerDifferentialTest, LargeVocabulary) {
  Generator gen(128256);
  kernels::cpu::ThreadPool pool(2);
  RunBatch(gen, 128256, 24, /*allow_nan=*/false, &pool);
  if (HasFatalFailure()) return;
  // The benchmark's rows: N(0, 3) logits, temperature 0.8, top-k 50 + top-p 0.9, and greedy.
  constexpr int kVocab = 128256;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<Case> cases(12);
  for (size_t r = 0; r < cases.size(); ++r) {
    Case& c = cases[r];
    c.logits.resize(kVocab);
    for (float& l : c.logits) l = nd(rng);
    c.params.temperature = r % 3 == 0 ? 0.0f : 0.8f;
    if (r % 3 == 2) {
      c.params.top_k = 50;
      c.params.top_p = 0.9f;
    }
    c.params.logprobs = r % 4 == 0 ? 5 : -1;
    c.tokens.assign(600, 5);
    c.num_prompt = 512;
    c.seed = 7;
    c.sample_index = static_cast<int>(r);
  }
  const std::vector<int64_t> eos{2};
  testing::ReferenceSampler ref(kVocab);
  Sampler s(kVocab);
  std::vector<SamplingRow> batch;
  batch.reserve(cases.size());
  for (const Case& c : cases) batch.push_back(c.Row(&eos));
  std::vector<SampleResult> got(batch.size());
  s.SampleBatch(batch, got, &pool);
  for (size_t i = 0; i < batch.size(); ++i) {
    ExpectSame(ref.Sample(batch[i]), got[i], "benchmark row " + std::to_string(i));
    if (HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace muse::engine
