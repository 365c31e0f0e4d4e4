// The engine's structured-output mask jobs (src/engine/token_masks.h): a job's mask is the
// matcher's, min_tokens folded in unless that leaves no token, copies identical, an empty mask
// flagged; the worker gives the same masks alone and over a pool, step after step.
#include "src/engine/token_masks.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "tests/engine/structured_test_grammars.h"

namespace muse::engine {
namespace {

constexpr int kVocab = 100;
constexpr int kEos = 2;
constexpr int kWords = (kVocab + 31) / 32;

std::shared_ptr<const structured::CompiledGrammar> Compile(structured::Grammar g) {
  return testing::CompileForTest(std::move(g), kVocab, kEos);
}

bool Bit(const std::vector<uint32_t>& w, int id) { return (w[id / 32] >> (id % 32)) & 1u; }

// The id of a one-byte token.
int32_t TokenOf(const structured::TokenVocabulary& v, char c) {
  for (int32_t id = 0; id < v.vocab_size(); ++id) {
    if (v.bytes(id) == std::string(1, c)) return id;
  }
  ADD_FAILURE() << "no token '" << c << "'";
  return -1;
}

std::vector<uint32_t> MaskOf(TokenMaskJob job) {
  std::vector<uint32_t> words(static_cast<size_t>(kWords) * job.copies, 0xdeadbeefu);
  job.words = words.data();
  job.num_words = kWords;
  ComputeTokenMask(job);
  EXPECT_TRUE(job.error.empty()) << job.error;
  EXPECT_FALSE(job.empty);
  return words;
}

TEST(TokenMasksTest, MinTokensHoldsEosBackUnlessOnlyEosIsLeft) {
  const auto digits = Compile(testing::DigitsGrammar());
  ASSERT_NE(digits, nullptr);
  structured::GrammarMatcher m(digits);
  ASSERT_TRUE(m.AcceptToken(TokenOf(digits->vocab(), '7')));
  SamplingParams p;
  p.min_tokens = 3;
  const std::vector<int64_t> eos = {kEos};
  TokenMaskJob job;
  job.matcher = &m;
  job.params = &p;
  job.eos_token_ids = &eos;
  job.generated = 1;
  std::vector<uint32_t> plain(kWords);
  m.FillNextTokenBitmask(plain);
  ASSERT_TRUE(Bit(plain, kEos));  // the grammar may end after a digit
  std::vector<uint32_t> folded = MaskOf(job);
  EXPECT_FALSE(Bit(folded, kEos));
  for (int id = 0; id < kVocab; ++id) {
    if (id != kEos) EXPECT_EQ(Bit(folded, id), Bit(plain, id)) << id;
  }
  p.ignore_eos = true;  // EOS is not held back then (as the sampler does without a grammar)
  EXPECT_EQ(MaskOf(job), plain);
  p.ignore_eos = false;
  job.generated = 3;  // min_tokens reached
  EXPECT_EQ(MaskOf(job), plain);

  // "x" then nothing but EOS: min_tokens cannot hold it back (the grammar wins).
  const auto lit = Compile(testing::LiteralGrammar("x"));
  structured::GrammarMatcher done(lit);
  ASSERT_TRUE(done.AcceptToken(TokenOf(lit->vocab(), 'x')));
  job.matcher = &done;
  job.generated = 1;
  p.stop_token_ids = {kEos, 5};
  const std::vector<uint32_t> only_eos = MaskOf(job);
  for (int id = 0; id < kVocab; ++id) EXPECT_EQ(Bit(only_eos, id), id == kEos) << id;
}

TEST(TokenMasksTest, CopiesAndDeadEnds) {
  const auto obj = Compile(testing::ObjectGrammar());
  structured::GrammarMatcher m(obj);
  TokenMaskJob job;
  job.matcher = &m;
  job.copies = 3;
  const std::vector<uint32_t> words = MaskOf(job);
  for (int c = 1; c < 3; ++c) {
    EXPECT_TRUE(std::equal(words.begin(), words.begin() + kWords, words.begin() + c * kWords));
  }
  const auto dead = Compile(testing::LiteralGrammar("Z"));  // no token holds 'Z'
  structured::GrammarMatcher d(dead);
  std::vector<uint32_t> w(kWords, ~0u);
  TokenMaskJob dj;
  dj.matcher = &d;
  dj.words = w.data();
  dj.num_words = kWords;
  ComputeTokenMask(dj);
  EXPECT_TRUE(dj.empty);
  EXPECT_TRUE(dj.error.empty());
}

// Many matchers at different states: the worker (alone and over a 3-thread pool) gives every
// job the mask its matcher gives directly, over several steps.
TEST(TokenMasksTest, WorkerMatchesDirectMasksAloneAndOverAPool) {
  const auto obj = Compile(testing::ObjectGrammar());
  const std::string text = "{\"ab\":12,\"c\":\"x y\",\"d\":true}";
  std::vector<structured::GrammarMatcher> matchers;
  for (size_t len = 0; len < text.size(); len += 2) {
    structured::GrammarMatcher m(obj);
    ASSERT_TRUE(m.AcceptBytes(text.substr(0, len))) << len;
    matchers.push_back(std::move(m));
  }
  kernels::cpu::ThreadPool pool(3);
  for (kernels::cpu::ThreadPool* p : {static_cast<kernels::cpu::ThreadPool*>(nullptr), &pool}) {
    TokenMaskWorker worker(p);
    worker.Wait();  // nothing started: returns at once
    for (int step = 0; step < 3; ++step) {
      std::vector<uint32_t> words(matchers.size() * kWords, 0u);
      std::vector<TokenMaskJob> jobs(matchers.size());
      for (size_t i = 0; i < matchers.size(); ++i) {
        jobs[i].matcher = &matchers[i];
        jobs[i].words = words.data() + i * kWords;
        jobs[i].num_words = kWords;
      }
      worker.Start(jobs);
      worker.Wait();
      for (size_t i = 0; i < matchers.size(); ++i) {
        std::vector<uint32_t> want(kWords);
        matchers[i].FillNextTokenBitmask(want);
        EXPECT_TRUE(std::equal(want.begin(), want.end(), words.begin() + i * kWords))
            << "matcher " << i << " step " << step;
        EXPECT_FALSE(jobs[i].empty);
      }
    }
  }
}

}  // namespace
}  // namespace muse::engine
