// Fault injection in the runner (issue #15): the real CPU runner on a random checkpoint, wrapped in
// FaultInjectingRunner. A step whose Forward returns an error or throws fails only the requests in
// that step, with INTERNAL naming the step; their blocks are freed at once; requests outside the
// step go on and produce exactly what they produce alone; later requests are served normally.
// KV exhaustion preempts and everything completes. The block invariant is checked after every
// EngineCore step.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "models/testing/random_checkpoint.h"
#include "src/engine/engine.h"
#include "src/engine/engine_core.h"
#include "src/runtime/model_runner.h"
#include "tests/engine/engine_test_model.h"
#include "tests/engine/fault_injecting_runner.h"

namespace muse::engine {
namespace {

using testing::FaultInjectingRunner;
using Kind = FaultInjectingRunner::Kind;

constexpr int kVocab = 300;

models::ModelConfig TestConfig() { return testing::SmallLlamaConfig(kVocab, 136, "float32", 2); }

std::string ModelDir() {
  static const std::string dir =
      testing::WriteTestModel("muse_engine_fault_test_", TestConfig(), {.seed = 17});
  return dir;
}

std::unique_ptr<runtime::ModelRunner> MakeRunner(int64_t num_blocks) {
  return testing::MakeCpuRunner(ModelDir(), num_blocks);
}

std::vector<int32_t> Prompt(int len, int seed) { return testing::RandomPrompt(len, seed, kVocab); }

Request Req(const std::string& id, std::vector<int32_t> prompt, int max_tokens, int n = 1) {
  Request r;
  r.id = id;
  r.prompt_token_ids = std::move(prompt);
  r.sampling.max_tokens = max_tokens;
  r.sampling.temperature = n > 1 ? 1.0f : 0.0f;
  r.sampling.seed = 7;
  r.sampling.n = n;
  r.sampling.ignore_eos = true;
  return r;
}

struct Result {
  std::vector<std::vector<int32_t>> tokens;  // per sample
  std::vector<std::optional<FinishReason>> finish;
  int finished_messages = 0;
  absl::Status error;  // of the final message
  bool done() const { return finished_messages > 0; }
};

void Absorb(RequestOutput out, Result* res) {
  for (auto& d : out.samples) {
    if (res->tokens.size() <= static_cast<size_t>(d.index)) {
      res->tokens.resize(d.index + 1);
      res->finish.resize(d.index + 1);
    }
    auto& t = res->tokens[d.index];
    t.insert(t.end(), d.token_ids.begin(), d.token_ids.end());
    if (d.finish_reason) res->finish[d.index] = d.finish_reason;
  }
  if (out.finished) {
    ++res->finished_messages;
    res->error = out.error;
  }
}

// EngineCore on a fault-injecting runner, stepped by hand.
class Harness {
 public:
  explicit Harness(int64_t num_blocks, SchedulerConfig sc = {}) {
    auto runner = std::make_unique<FaultInjectingRunner>(MakeRunner(num_blocks));
    runner_ = runner.get();
    owned_ = std::move(runner);
    EngineOptions eo;
    eo.scheduler = sc;
    eo.seed = 5;
    auto c = EngineCore::Create(runner_, eo);
    EXPECT_TRUE(c.ok()) << c.status();
    core_ = std::move(*c);
  }
  void Add(Request r) {
    auto s = std::make_shared<OutputStream>(r.id);
    const std::string id = r.id;
    auto st = core_->AddRequest(std::move(r), s);
    ASSERT_TRUE(st.ok()) << st;
    streams_[id] = s;
  }
  void Step() {
    ASSERT_TRUE(core_->Step().ok());
    auto inv = core_->CheckInvariants();
    ASSERT_TRUE(inv.ok()) << inv;
    for (auto& [id, s] : streams_) {
      while (auto out = s->TryNext()) Absorb(std::move(*out), &results_[id]);
    }
  }
  void RunToEnd() {
    for (int i = 0; i < 10000 && core_->HasWork(); ++i) Step();
    Step();
    ASSERT_FALSE(core_->HasWork());
  }
  // Arms a fault on the next runner step.
  void FailNextStep(FaultInjectingRunner::Fault f) {
    runner_->FailStep(runner_->steps(), std::move(f));
  }
  FaultInjectingRunner& runner() { return *runner_; }
  EngineCore& core() { return *core_; }
  const Result& result(const std::string& id) { return results_[id]; }
  // No block is referenced: every block is free or only in the prefix cache.
  void ExpectNoLeak() {
    EXPECT_EQ(core_->blocks().num_free_blocks(), core_->blocks().num_blocks());
    EXPECT_EQ(core_->Stats().kv_blocks_used, 0);
    EXPECT_EQ(core_->Stats().num_requests, 0);
  }

 private:
  std::unique_ptr<runtime::ModelRunner> owned_;
  FaultInjectingRunner* runner_ = nullptr;
  std::unique_ptr<EngineCore> core_;
  std::map<std::string, std::shared_ptr<OutputStream>> streams_;
  std::map<std::string, Result> results_;
};

// The tokens a request produces alone on a healthy runner.
std::vector<std::vector<int32_t>> Alone(const Request& r) {
  Harness h(256, {.enable_prefix_caching = false});
  h.Add(r);
  h.RunToEnd();
  return h.result(r.id).tokens;
}

void ExpectFailedInternal(const Result& r, const std::string& id) {
  ASSERT_EQ(r.finished_messages, 1) << id;
  EXPECT_EQ(r.error.code(), absl::StatusCode::kInternal) << id << ": " << r.error;
  EXPECT_NE(r.error.message().find("model step"), std::string::npos) << r.error;
  for (const auto& f : r.finish) EXPECT_EQ(f, FinishReason::kError) << id;
}

void ExpectCompleted(const Result& r, const Request& req) {
  ASSERT_EQ(r.finished_messages, 1) << req.id;
  EXPECT_TRUE(r.error.ok()) << req.id << ": " << r.error;
  EXPECT_EQ(r.tokens, Alone(req)) << req.id;
  for (const auto& f : r.finish) EXPECT_EQ(f, FinishReason::kLength) << req.id;
}

struct FaultCase {
  const char* name;
  FaultInjectingRunner::Fault fault;
};

class StepFaultTest : public ::testing::TestWithParam<FaultCase> {};

// Two decoding requests are in the failing step; a third waits for a seat and is untouched.
TEST_P(StepFaultTest, FailsOnlyTheStepsRequestsWithInternal) {
  Harness h(64, {.max_num_seqs = 2});
  const Request a = Req("a", Prompt(20, 1), 12), b = Req("b", Prompt(9, 2), 12);
  const Request c = Req("c", Prompt(25, 3), 10);
  h.Add(a);
  h.Add(b);
  h.Add(c);
  for (int i = 0; i < 3; ++i) h.Step();
  ASSERT_EQ(h.core().Stats().num_running_seqs, 2);
  const int before = h.core().blocks().num_free_blocks();
  ASSERT_LT(before, h.core().blocks().num_blocks());
  h.FailNextStep(GetParam().fault);
  h.Step();
  EXPECT_EQ(h.runner().faults(), 1);
  ExpectFailedInternal(h.result("a"), "a");
  ExpectFailedInternal(h.result("b"), "b");
  EXPECT_NE(h.result("a").error.message().find("injected fault"), std::string::npos);
  EXPECT_EQ(h.core().Stats().requests_failed, 2);
  // a's and b's blocks are free already (c is admitted only by the next step).
  EXPECT_EQ(h.core().blocks().num_free_blocks(), h.core().blocks().num_blocks());
  EXPECT_FALSE(h.result("c").done());
  h.RunToEnd();
  ExpectCompleted(h.result("c"), c);
  // The engine serves later requests normally, the same prompts included.
  const Request a2 = Req("a2", Prompt(20, 1), 12), d = Req("d", Prompt(40, 4), 8);
  h.Add(a2);
  h.Add(d);
  h.RunToEnd();
  ExpectCompleted(h.result("a2"), a2);
  ExpectCompleted(h.result("d"), d);
  EXPECT_EQ(h.core().Stats().requests_failed, 2);
  h.ExpectNoLeak();
}

INSTANTIATE_TEST_SUITE_P(
    Faults, StepFaultTest,
    ::testing::Values(
        FaultCase{"Error", {Kind::kError, absl::UnknownError("injected fault: device lost")}},
        // A runner's InvalidArgument (a bad batch is the engine's bug) is INTERNAL to the client.
        FaultCase{"InvalidArgument",
                  {Kind::kError, absl::InvalidArgumentError("injected fault: slot_mapping[3]")}},
        FaultCase{"ErrorAfterKvWritten", {Kind::kError, {}, /*after_forward=*/true}},
        FaultCase{"Throw", {Kind::kThrow}},
        FaultCase{"ThrowAfterKvWritten", {Kind::kThrow, {}, /*after_forward=*/true}}),
    [](const ::testing::TestParamInfo<FaultCase>& info) { return info.param.name; });

// The failing step holds the second prefill chunk of a long prompt and the decodes of two others.
// All three fail; the prompt's first chunk (computed by a good step) stays in the prefix cache and
// serves a resubmission of the same prompt with identical output.
TEST(EngineFaultTest, StepMixingAPrefillChunkAndDecodes) {
  for (const Kind kind : {Kind::kError, Kind::kThrow}) {
    SCOPED_TRACE(kind == Kind::kError ? "error" : "throw");
    Harness h(64, {.max_num_batched_tokens = 34, .max_num_seqs = 3});
    const Request a = Req("a", Prompt(10, 1), 30), b = Req("b", Prompt(12, 2), 30);
    const Request lng = Req("long", Prompt(150, 3), 6), w = Req("w", Prompt(21, 4), 9);
    h.Add(a);
    h.Add(b);
    h.Step();  // a, b prefilled
    h.Add(lng);
    h.Add(w);  // no seat until something finishes
    h.runner().SetPolicy([kind](int64_t, const models::Batch& batch) {
      FaultInjectingRunner::Fault f;
      for (int i = 0; i < FaultInjectingRunner::NumSequences(batch); ++i) {
        const int q = FaultInjectingRunner::QueryLen(batch, i);
        // A prefill chunk that is not the prompt's first, beside decodes.
        if (q > 1 && batch.seq_lens[i] > q && FaultInjectingRunner::MixesPrefillAndDecode(batch)) {
          f.kind = kind;
        }
      }
      return f;
    });
    for (int i = 0; i < 5 && h.runner().faults() == 0; ++i) h.Step();
    ASSERT_EQ(h.runner().faults(), 1);
    h.runner().SetPolicy(nullptr);
    const models::Batch failed = h.runner().failed_batches().at(0);
    EXPECT_EQ(failed.num_seqs(), 3);
    ExpectFailedInternal(h.result("a"), "a");
    ExpectFailedInternal(h.result("b"), "b");
    ExpectFailedInternal(h.result("long"), "long");
    EXPECT_FALSE(h.result("w").done());
    EXPECT_EQ(h.core().Stats().kv_blocks_used, 0);
    EXPECT_GT(h.core().Stats().kv_blocks_cached, 0);  // the first chunk's full blocks
    h.RunToEnd();
    ExpectCompleted(h.result("w"), w);
    const int64_t hits_before = h.core().Stats().prefix_cache_hit_tokens;
    const Request again = Req("again", Prompt(150, 3), 6);
    h.Add(again);
    h.RunToEnd();
    EXPECT_GE(h.core().Stats().prefix_cache_hit_tokens - hits_before, 16);
    ExpectCompleted(h.result("again"), again);
    h.ExpectNoLeak();
  }
}

// A fault while the pool is exhausted: preemption, failure and recompute together.
TEST(EngineFaultTest, FaultDuringPreemptionLeavesNoBlockBehind) {
  Harness h(10, {.max_num_batched_tokens = 64, .max_num_seqs = 4});
  std::vector<Request> reqs;
  reqs.reserve(4);
  for (int i = 0; i < 4; ++i) reqs.push_back(Req(absl::StrCat("p", i), Prompt(40, 50 + i), 36));
  for (const auto& r : reqs) h.Add(r);
  int faults = 0;
  for (int i = 0; i < 10000 && h.core().HasWork(); ++i) {
    if (h.core().Stats().num_preemptions > 0 && faults == 0) {
      h.FailNextStep({Kind::kThrow});
      faults = 1;
    }
    h.Step();
  }
  h.RunToEnd();
  ASSERT_EQ(h.runner().faults(), 1);
  int failed = 0;
  for (const auto& r : reqs) {
    const Result& res = h.result(r.id);
    ASSERT_EQ(res.finished_messages, 1) << r.id;
    if (res.error.ok()) {
      EXPECT_EQ(res.tokens, Alone(r)) << r.id;
    } else {
      ExpectFailedInternal(res, r.id);
      ++failed;
    }
  }
  EXPECT_GE(failed, 1);
  EXPECT_LT(failed, 4);  // at least one was preempted, outside the failing step
  EXPECT_EQ(h.core().Stats().requests_failed, failed);
  h.ExpectNoLeak();
}

// One client thread per request against the threaded Engine; each stream read to its end.
std::vector<Result> RunClients(Engine& engine, const std::vector<Request>& reqs) {
  std::vector<Result> results(reqs.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < reqs.size(); ++i) {
    clients.emplace_back([&, i] {
      auto s = engine.AddRequest(reqs[i]);
      ASSERT_TRUE(s.ok()) << s.status();
      while (auto out = (*s)->Next()) Absorb(std::move(*out), &results[i]);
    });
  }
  for (auto& t : clients) t.join();
  return results;
}

// The threaded Engine: concurrent clients, every third step fails (error or throw, in turn). Every
// stream ends exactly once, either complete and identical to running alone or INTERNAL; then,
// faults off, the same engine serves everything.
TEST(EngineThreadFaultTest, RepeatedFailuresKeepTheEngineServing) {
  auto owned = std::make_unique<FaultInjectingRunner>(MakeRunner(64));
  FaultInjectingRunner* runner = owned.get();
  runner->SetPolicy([](int64_t step, const models::Batch&) {
    FaultInjectingRunner::Fault f;
    if (step % 3 == 2) f.kind = step % 2 == 0 ? Kind::kThrow : Kind::kError;
    return f;
  });
  EngineOptions eo;
  eo.scheduler.max_num_batched_tokens = 48;
  eo.scheduler.max_num_seqs = 4;
  eo.seed = 5;
  auto engine = Engine::Create(std::move(owned), eo);
  ASSERT_TRUE(engine.ok()) << engine.status();

  auto run_clients = [&](int first, int count) {
    std::vector<Request> reqs;
    for (int c = first; c < first + count; ++c) {
      reqs.push_back(
          Req(absl::StrCat("c", c), Prompt(5 + (c * 11) % 60, c), 4 + c % 9, c % 5 == 0 ? 2 : 1));
    }
    const std::vector<Result> results = RunClients(**engine, reqs);
    int failed = 0;
    for (size_t i = 0; i < reqs.size(); ++i) {
      EXPECT_EQ(results[i].finished_messages, 1) << reqs[i].id;
      if (results[i].error.ok()) {
        EXPECT_EQ(results[i].tokens, Alone(reqs[i])) << reqs[i].id;
      } else {
        ExpectFailedInternal(results[i], reqs[i].id);
        ++failed;
      }
    }
    return failed;
  };

  const int failed = run_clients(0, 12);
  EXPECT_GT(runner->faults(), 0);
  EXPECT_GT(failed, 0);
  EngineStats stats = muse::testing::SettledStats(**engine);
  EXPECT_EQ(stats.requests_failed, failed);
  EXPECT_EQ(stats.requests_finished, 12);
  EXPECT_EQ(stats.kv_blocks_used, 0);
  EXPECT_EQ(stats.num_requests, 0);

  runner->SetPolicy(nullptr);
  const int64_t faults = runner->faults();
  EXPECT_EQ(run_clients(100, 8), 0);
  EXPECT_EQ(runner->faults(), faults);
  stats = muse::testing::SettledStats(**engine);
  EXPECT_EQ(stats.requests_failed, failed);
  EXPECT_EQ(stats.requests_finished, 20);
  EXPECT_EQ(stats.kv_blocks_used, 0);
  EXPECT_EQ(stats.num_running_seqs + stats.num_waiting_seqs, 0);
}

// KV exhaustion: a pool far too small for what is asked at once. Requests are preempted (recompute)
// and resumed, never failed; everything completes identically to running alone and no block stays
// referenced.
TEST(EngineThreadFaultTest, KvExhaustionPreemptsAndCompletesEverything) {
  EngineOptions eo;
  eo.scheduler.max_num_batched_tokens = 64;
  eo.scheduler.max_num_seqs = 8;
  eo.seed = 5;
  // Each request needs up to 6 blocks (prompt + max_tokens <= 90 tokens); 10 of them share 12.
  auto engine = Engine::Create(MakeRunner(12), eo);
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::vector<Request> reqs;
  reqs.reserve(10);
  for (int c = 0; c < 10; ++c) {
    reqs.push_back(Req(absl::StrCat("k", c), Prompt(30 + c * 3, 70 + c), 40, c == 3 ? 2 : 1));
  }
  const std::vector<Result> results = RunClients(**engine, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_EQ(results[i].finished_messages, 1) << reqs[i].id;
    EXPECT_TRUE(results[i].error.ok()) << reqs[i].id << ": " << results[i].error;
    EXPECT_EQ(results[i].tokens, Alone(reqs[i])) << reqs[i].id;
  }
  const EngineStats stats = muse::testing::SettledStats(**engine);
  EXPECT_GT(stats.num_preemptions, 0);
  EXPECT_EQ(stats.requests_failed, 0);
  EXPECT_EQ(stats.requests_finished, 10);
  EXPECT_EQ(stats.kv_blocks_used, 0);
  EXPECT_EQ(stats.num_requests, 0);
}

}  // namespace
}  // namespace muse::engine
