// The engine on a tensor-parallel CPU runner (issue 20): rank 0's runner inside the EngineCore,
// rank 1 serving its broadcast batches on another thread, both ranks connected by Gloo. The same
// greedy requests as on one rank give the same tokens, with the scheduler's chunked prefill,
// prefix-cache hits and preemption (a pool too small for every sequence) all happening; the worker
// stops cleanly when rank 0's runner goes away.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/packed_gemm.h"
#include "models/testing/random_checkpoint.h"
#include "src/collective/gloo_communicator.h"
#include "src/engine/engine_core.h"
#include "src/runtime/model_runner.h"
#include "tests/runtime/test_configs.h"

namespace muse::engine {
namespace {

struct Outputs {
  std::map<std::string, std::vector<int32_t>> tokens;
  EngineStats stats;
};

std::vector<Request> Requests(int vocab) {
  std::mt19937 rng(77);
  auto ids = [&](int n) {
    std::vector<int32_t> v(n);
    for (auto& t : v) t = 3 + static_cast<int32_t>(rng() % (vocab - 3));
    return v;
  };
  const std::vector<int32_t> shared = ids(48);  // three full KV blocks every "p" request shares
  std::vector<Request> out;
  for (int i = 0; i < 6; ++i) {
    Request r;
    r.id = absl::StrCat(i % 2 == 0 ? "p" : "q", i);
    r.prompt_token_ids = i % 2 == 0 ? shared : ids(20 + 7 * i);
    if (i % 2 == 0) {
      const std::vector<int32_t> tail = ids(5 + i);
      r.prompt_token_ids.insert(r.prompt_token_ids.end(), tail.begin(), tail.end());
    }
    r.sampling.max_tokens = 48;
    r.sampling.temperature = 0.0f;
    r.sampling.ignore_eos = true;
    out.push_back(std::move(r));
  }
  return out;
}

// Runs the requests to the end on `runner` (rank 0 or the only rank). 14 blocks of 16 tokens for
// six sequences of up to ~100 tokens: the scheduler must preempt.
Outputs Run(runtime::ModelRunner* runner, int vocab) {
  EngineOptions eo;
  eo.scheduler.max_num_batched_tokens = 24;  // prefills go in chunks, beside decodes
  eo.scheduler.max_num_seqs = 6;
  eo.scheduler.enable_prefix_caching = true;
  auto core = EngineCore::Create(runner, eo);
  EXPECT_TRUE(core.ok()) << core.status();
  Outputs out;
  if (!core.ok()) return out;
  std::map<std::string, std::shared_ptr<OutputStream>> streams;
  // The "p" requests after the first arrive once it has run a while, so its blocks are cached.
  std::vector<Request> reqs = Requests(vocab);
  auto add = [&](const Request& r) {
    auto s = std::make_shared<OutputStream>(r.id);
    const absl::Status st = (*core)->AddRequest(r, s);
    EXPECT_TRUE(st.ok()) << st;
    streams[r.id] = s;
  };
  add(reqs[0]);
  for (int i = 0; i < 6; ++i) EXPECT_TRUE((*core)->Step().ok());
  for (size_t i = 1; i < reqs.size(); ++i) add(reqs[i]);
  for (int i = 0; i < 5000 && (*core)->HasWork(); ++i) {
    const absl::Status st = (*core)->Step();
    EXPECT_TRUE(st.ok()) << st;
    if (!st.ok()) break;
  }
  for (auto& [id, s] : streams) {
    while (auto m = s->TryNext()) {
      for (auto& d : m->samples) {
        out.tokens[id].insert(out.tokens[id].end(), d.token_ids.begin(), d.token_ids.end());
      }
    }
  }
  out.stats = (*core)->Stats();
  return out;
}

runtime::RunnerOptions Options(const std::string& dir, collective::Communicator* comm) {
  runtime::RunnerOptions o;
  o.model_dir = dir;
  o.num_threads = 1;
  o.num_kv_blocks = 14;
  o.tensor_parallel = comm;
  return o;
}

void ExpectSameAsOneRank(const std::string& variant) {
  if (!kernels::cpu::PackedGemmSupported()) GTEST_SKIP() << "needs AVX2 + FMA";
  const models::ModelConfig c = testing::SmallConfig(variant);
  const std::string dir = testing::MakeTempDir("engine-tp-" + variant);
  ASSERT_TRUE(models::WriteRandomCheckpoint(dir, c, {.seed = 5}).ok());

  auto single = runtime::CreateModelRunner(Options(dir, nullptr));
  ASSERT_TRUE(single.ok()) << single.status();
  const Outputs want = Run(single->get(), c.vocab_size);

  const std::string store = dir + "/store";
  absl::Status worker_status;
  std::thread worker([&] {
    collective::GlooOptions g{.rank = 1, .size = 2, .store_dir = store};
    auto comm = collective::ConnectGloo(g);
    ASSERT_TRUE(comm.ok()) << comm.status();
    auto r = runtime::CreateModelRunner(Options(dir, comm->get()));
    ASSERT_TRUE(r.ok()) << r.status();
    worker_status = (*r)->ServeTensorParallelWorker();
  });
  Outputs got;
  {
    collective::GlooOptions g{.rank = 0, .size = 2, .store_dir = store};
    auto comm = collective::ConnectGloo(g);
    ASSERT_TRUE(comm.ok()) << comm.status();
    auto r = runtime::CreateModelRunner(Options(dir, comm->get()));
    ASSERT_TRUE(r.ok()) << r.status();
    got = Run(r->get(), c.vocab_size);
  }  // rank 0's runner stops the worker
  worker.join();
  EXPECT_TRUE(worker_status.ok()) << worker_status;

  ASSERT_EQ(want.tokens.size(), 6u);
  for (const auto& [id, tokens] : want.tokens) {
    EXPECT_EQ(tokens.size(), 48u) << id;
    EXPECT_EQ(got.tokens.at(id), tokens) << variant << ": " << id;
  }
  // The comparison covers what it claims to.
  EXPECT_GT(want.stats.num_preemptions, 0);
  EXPECT_GT(want.stats.prefix_cache_hit_tokens, 0);
  EXPECT_EQ(got.stats.num_preemptions, want.stats.num_preemptions);
  EXPECT_EQ(got.stats.prefix_cache_hit_tokens, want.stats.prefix_cache_hit_tokens);
}

TEST(EngineTensorParallel, LlamaGreedyMatchesOneRank) { ExpectSameAsOneRank("llama"); }
TEST(EngineTensorParallel, Qwen2GreedyMatchesOneRank) { ExpectSameAsOneRank("qwen2"); }
TEST(EngineTensorParallel, MistralGreedyMatchesOneRank) { ExpectSameAsOneRank("mistral"); }

// A worker whose rank 0 dies: its next broadcast fails as Unavailable, it does not hang.
TEST(EngineTensorParallel, WorkerWhoseRankZeroIsGoneReturnsUnavailable) {
  if (!kernels::cpu::PackedGemmSupported()) GTEST_SKIP() << "needs AVX2 + FMA";
  const models::ModelConfig c = testing::SmallConfig("llama");
  const std::string dir = testing::MakeTempDir("engine-tp-dead");
  ASSERT_TRUE(models::WriteRandomCheckpoint(dir, c, {.seed = 5}).ok());
  const std::string store = dir + "/store";
  absl::Status worker_status;
  std::thread worker([&] {
    collective::GlooOptions g{
        .rank = 1, .size = 2, .store_dir = store, .timeout = absl::Seconds(5)};
    auto comm = collective::ConnectGloo(g);
    ASSERT_TRUE(comm.ok()) << comm.status();
    auto r = runtime::CreateModelRunner(Options(dir, comm->get()));
    ASSERT_TRUE(r.ok()) << r.status();
    worker_status = (*r)->ServeTensorParallelWorker();
  });
  {
    collective::GlooOptions g{
        .rank = 0, .size = 2, .store_dir = store, .timeout = absl::Seconds(5)};
    auto comm = collective::ConnectGloo(g);
    ASSERT_TRUE(comm.ok()) << comm.status();
    // Rank 0 "dies": its communicator goes away without the runner's goodbye.
  }
  worker.join();
  EXPECT_EQ(worker_status.code(), absl::StatusCode::kUnavailable) << worker_status;
}

}  // namespace
}  // namespace muse::engine
