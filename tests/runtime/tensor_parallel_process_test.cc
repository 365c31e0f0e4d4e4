// Tensor parallelism across processes (issue 20): CreateModelRunner with tensor_parallel_size 2
// starts a muse-tp-worker process, and rank 0's runner gives one rank's logits (within 1e-5
// relative) and greedy ids. A worker killed with SIGKILL makes the runner Unavailable, naming the
// rank and the signal, within a bounded time (not a hang); no worker outlives its runner.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cpu/packed_gemm.h"
#include "models/testing/random_checkpoint.h"
#include "src/runtime/model_runner.h"
#include "src/runtime/tensor_parallel_group.h"
#include "tests/runtime/test_configs.h"

namespace muse::runtime {
namespace {

const std::string& ModelDir() {
  static const std::string dir = [] {
    const std::string d = testing::MakeTempDir("tp-process");
    EXPECT_TRUE(models::WriteRandomCheckpoint(d, testing::SmallConfig("qwen2"), {.seed = 3}).ok());
    return d;
  }();
  return dir;
}

RunnerOptions Options(int tp) {
  RunnerOptions o;
  o.model_dir = ModelDir();
  o.num_threads = 1;
  o.num_kv_blocks = 16;
  o.tensor_parallel_size = tp;
  o.tensor_parallel_worker = std::string(MUSE_BIN_DIR) + "/muse-tp-worker";
  o.tensor_parallel_timeout_seconds = 10;
  return o;
}

// One sequence: a 20-token prompt, then `decodes` greedy steps. Logits of every step.
std::vector<std::vector<float>> Greedy(ModelRunner& r, int decodes) {
  const int vocab = static_cast<int>(r.config().vocab_size);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 20; ++i) tokens.push_back(3 + (i * 37) % (vocab - 3));
  std::vector<std::vector<float>> out;
  int done = 0;
  for (int step = 0; step <= decodes; ++step) {
    models::Batch b;
    b.max_blocks_per_seq = 4;
    b.block_tables = {5, 2, 9, 0};
    b.query_start_loc = {0};
    for (int p = done; p < static_cast<int>(tokens.size()); ++p) {
      b.input_ids.push_back(tokens[p]);
      b.positions.push_back(p);
      b.slot_mapping.push_back(static_cast<int64_t>(b.block_tables[p / 16]) * 16 + p % 16);
    }
    done = static_cast<int>(tokens.size());
    b.query_start_loc.push_back(b.num_tokens());
    b.seq_lens = {done};
    b.logits_indices = {b.num_tokens() - 1};
    models::Logits l;
    const absl::Status st = r.Forward(b, &l);
    EXPECT_TRUE(st.ok()) << st;
    if (!st.ok()) break;
    tokens.push_back(
        static_cast<int32_t>(std::max_element(l.data.begin(), l.data.end()) - l.data.begin()));
    out.push_back(std::move(l.data));
  }
  return out;
}

bool ProcessGone(pid_t pid) { return kill(pid, 0) != 0 && errno == ESRCH; }

// This process's children named muse-tp-worker (running or zombie), from /proc.
int WorkerChildren() {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::ifstream stat(e.path() / "stat");
    std::string line;
    if (!stat || !std::getline(stat, line)) continue;
    // pid (comm) state ppid ...
    const size_t close = line.rfind(')');
    const size_t open = line.find('(');
    if (open == std::string::npos || close == std::string::npos) continue;
    const std::string comm = line.substr(open + 1, close - open - 1);
    std::istringstream rest(line.substr(close + 2));
    std::string state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == getpid() && comm == "muse-tp-worker") ++n;
  }
  return n;
}

#define REQUIRE_CPU_KERNELS() \
  if (!kernels::cpu::PackedGemmSupported()) GTEST_SKIP() << "needs AVX2 + FMA"

TEST(TensorParallelProcess, TwoProcessesGiveOneRanksLogitsAndLeaveNoWorker) {
  REQUIRE_CPU_KERNELS();
  auto one = CreateModelRunner(Options(1));
  ASSERT_TRUE(one.ok()) << one.status();
  const auto want = Greedy(**one, 12);
  auto two = CreateModelRunner(Options(2));
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_TRUE((*two)->Health().ok());
  const auto got = Greedy(**two, 12);
  ASSERT_EQ(got.size(), want.size());
  for (size_t s = 0; s < want.size(); ++s) {
    float scale = 0, diff = 0;
    for (size_t i = 0; i < want[s].size(); ++i) {
      scale = std::max(scale, std::fabs(want[s][i]));
      diff = std::max(diff, std::fabs(got[s][i] - want[s][i]));
    }
    EXPECT_LE(diff / scale, 1e-5) << "step " << s;
    EXPECT_EQ(std::max_element(got[s].begin(), got[s].end()) - got[s].begin(),
              std::max_element(want[s].begin(), want[s].end()) - want[s].begin())
        << "step " << s;
  }
}

TEST(TensorParallelProcess, AKilledWorkerMakesTheRunnerUnavailableNotAHang) {
  REQUIRE_CPU_KERNELS();
  TensorParallelGroupOptions g;
  g.size = 2;
  g.worker_binary = std::string(MUSE_BIN_DIR) + "/muse-tp-worker";
  g.timeout_seconds = 10;
  // Through the group directly, to know the worker's pid.
  g.worker_args = {"--model=" + ModelDir(), "--threads=1", "--num-kv-blocks=16"};
  auto group = TensorParallelGroup::Start(g);
  ASSERT_TRUE(group.ok()) << group.status();
  const pid_t worker = (*group)->worker_pids().at(0);
  RunnerOptions o = Options(1);
  o.tensor_parallel = (*group)->comm();
  {
    auto rank0 = CreateModelRunner(o);
    ASSERT_TRUE(rank0.ok()) << rank0.status();
    Greedy(**rank0, 2);
    ASSERT_EQ(kill(worker, SIGKILL), 0);
    const auto start = std::chrono::steady_clock::now();
    while ((*group)->Health().ok() &&
           std::chrono::steady_clock::now() - start < std::chrono::seconds(5)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    const absl::Status h = (*group)->Health();
    EXPECT_EQ(h.code(), absl::StatusCode::kUnavailable) << h;
    EXPECT_NE(h.message().find("rank 1"), std::string::npos) << h;
    EXPECT_NE(h.message().find("signal 9"), std::string::npos) << h;
    // The next step's collective fails at once: the peer's sockets are closed.
    models::Batch b;
    b.input_ids = {5};
    b.positions = {0};
    b.query_start_loc = {0, 1};
    b.seq_lens = {1};
    b.max_blocks_per_seq = 1;
    b.block_tables = {3};
    b.slot_mapping = {48};
    b.logits_indices = {0};
    models::Logits l;
    const auto t0 = std::chrono::steady_clock::now();
    const absl::Status st = (*rank0)->Forward(b, &l);
    EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(11));
  }
  group->reset();
  EXPECT_TRUE(ProcessGone(worker));
}

TEST(TensorParallelProcess, TheRunnerOwnsItsWorkersAndReportsThem) {
  REQUIRE_CPU_KERNELS();
  // Through CreateModelRunner: the worker is a child of this process while the runner lives.
  ASSERT_EQ(WorkerChildren(), 0);
  auto r = CreateModelRunner(Options(2));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(WorkerChildren(), 1);
  Greedy(**r, 1);
  r->reset();
  // After the runner: its worker is gone and reaped (not even a zombie).
  EXPECT_EQ(WorkerChildren(), 0);
}

TEST(TensorParallelProcess, StartupErrorsNameTheRankAndReason) {
  REQUIRE_CPU_KERNELS();
  RunnerOptions o = Options(4);  // 6 query heads over 4 ranks
  auto r = CreateModelRunner(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(r.status().message().find("num_attention_heads 6"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("rank 0"), std::string::npos) << r.status();
  o = Options(2);
  o.tensor_parallel_worker = "/nonexistent/muse-tp-worker";
  r = CreateModelRunner(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_NE(r.status().message().find("/nonexistent/muse-tp-worker"), std::string::npos);
  o = Options(0);
  EXPECT_EQ(CreateModelRunner(o).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace muse::runtime
