// Communicator over Gloo: every collective against values computed here, at odd sizes, with ranks
// as threads and as processes; a peer that dies or never joins is Unavailable, never a hang.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "src/collective/gloo_communicator.h"

namespace muse::collective {
namespace {

std::string FreshStoreDir() {
  static int n = 0;
  std::string dir = absl::StrCat(::testing::TempDir(), "/gloo_store_", getpid(), "_", n++);
  std::filesystem::remove_all(dir);
  return dir;
}

// Runs `body(comm)` on `size` ranks, one thread each, all joined before returning.
void RunRanks(int size, const std::function<void(Communicator&)>& body,
              absl::Duration timeout = absl::Seconds(30)) {
  const std::string dir = FreshStoreDir();
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) {
    threads.emplace_back([&, r] {
      GlooOptions o;
      o.rank = r;
      o.size = size;
      o.store_dir = dir;
      o.timeout = timeout;
      auto comm = ConnectGloo(o);
      ASSERT_TRUE(comm.ok()) << comm.status();
      EXPECT_EQ((*comm)->rank(), r);
      EXPECT_EQ((*comm)->size(), size);
      body(**comm);
    });
  }
  for (auto& t : threads) t.join();
}

// Rank r's input: values that differ per rank and element, none zero.
std::vector<float> RankValues(int rank, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed * 131 + rank);
  std::uniform_real_distribution<float> u(0.25f, 2.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = (rng() & 1 ? 1.0f : -1.0f) * u(rng);
  return v;
}

class CollectiveTest : public ::testing::TestWithParam<int> {};

TEST_P(CollectiveTest, AllReduceSumsEveryElementAndEveryRankGetsTheSameBits) {
  const int size = GetParam();
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{4099}, int64_t{300001}}) {
    std::vector<std::vector<float>> results(size);
    RunRanks(size, [&](Communicator& c) {
      std::vector<float> v = RankValues(c.rank(), n, 1);
      ASSERT_TRUE(c.AllReduceSum(v.data(), n).ok());
      results[c.rank()] = std::move(v);
    });
    std::vector<double> want(n, 0.0);
    for (int r = 0; r < size; ++r) {
      const std::vector<float> v = RankValues(r, n, 1);
      for (int64_t i = 0; i < n; ++i) want[i] += v[i];
    }
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(results[0][i], want[i], 1e-5 * size) << "n " << n << " element " << i;
    }
    for (int r = 1; r < size; ++r) {
      ASSERT_EQ(0, std::memcmp(results[0].data(), results[r].data(), n * sizeof(float)))
          << "rank " << r << " differs from rank 0, n " << n;
    }
  }
}

TEST_P(CollectiveTest, AllGatherPlacesEachRanksPartAtItsOffset) {
  const int size = GetParam();
  for (int64_t n : {int64_t{1}, int64_t{13}, int64_t{50001}}) {
    RunRanks(size, [&](Communicator& c) {
      std::vector<float> in = RankValues(c.rank(), n, 2);
      std::vector<float> out(n * size, 0.0f);
      ASSERT_TRUE(c.AllGather(in.data(), n, out.data()).ok());
      for (int r = 0; r < size; ++r) {
        std::vector<float> want = RankValues(r, n, 2);
        ASSERT_EQ(0, std::memcmp(out.data() + r * n, want.data(), n * sizeof(float)))
            << "rank " << c.rank() << " got a wrong part " << r;
      }
    });
  }
}

TEST_P(CollectiveTest, BroadcastAndMessagesFromEveryRoot) {
  const int size = GetParam();
  RunRanks(size, [&](Communicator& c) {
    for (int root = 0; root < size; ++root) {
      std::vector<float> v = RankValues(c.rank(), 1001, 3);
      ASSERT_TRUE(c.Broadcast(v.data(), v.size() * sizeof(float), root).ok());
      EXPECT_EQ(v, RankValues(root, 1001, 3));
      // Sizes only the root knows, the empty message included.
      for (size_t len : {size_t{0}, size_t{1}, size_t{70000}}) {
        std::string m = c.rank() == root ? std::string(len, static_cast<char>('a' + root))
                                         : std::string("stale");
        ASSERT_TRUE(c.BroadcastMessage(&m, root).ok());
        EXPECT_EQ(m, std::string(len, static_cast<char>('a' + root)));
      }
    }
    EXPECT_TRUE(c.Barrier().ok());
  });
}

INSTANTIATE_TEST_SUITE_P(Ranks, CollectiveTest, ::testing::Values(2, 3));

TEST(CollectiveSingleRank, WorksWithoutAStore) {
  GlooOptions o;
  auto c = ConnectGloo(o);
  ASSERT_TRUE(c.ok()) << c.status();
  std::vector<float> v = {1.5f, -2.0f}, out(2);
  EXPECT_TRUE((*c)->AllReduceSum(v.data(), 2).ok());
  EXPECT_EQ(v, (std::vector<float>{1.5f, -2.0f}));
  EXPECT_TRUE((*c)->AllGather(v.data(), 2, out.data()).ok());
  EXPECT_EQ(out, v);
  EXPECT_TRUE((*c)->Barrier().ok());
}

TEST(CollectiveOptions, BadFieldsAreNamed) {
  GlooOptions o;
  o.size = 0;
  EXPECT_EQ(ConnectGloo(o).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ConnectGloo(o).status().message().find("size"), std::string::npos);
  o.size = 2;
  o.rank = 2;
  EXPECT_NE(ConnectGloo(o).status().message().find("rank"), std::string::npos);
  o.rank = 0;
  o.store_dir = "";
  EXPECT_NE(ConnectGloo(o).status().message().find("store_dir"), std::string::npos);
  o.store_dir = FreshStoreDir();
  o.timeout = absl::ZeroDuration();
  EXPECT_NE(ConnectGloo(o).status().message().find("timeout"), std::string::npos);
}

TEST(CollectiveFailure, APeerThatNeverJoinsIsUnavailableAfterTheTimeout) {
  GlooOptions o;
  o.rank = 0;
  o.size = 2;
  o.store_dir = FreshStoreDir();
  o.timeout = absl::Seconds(2);
  const absl::Time start = absl::Now();
  auto c = ConnectGloo(o);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable) << c.status();
  EXPECT_NE(c.status().message().find("rank 0 of 2"), std::string::npos) << c.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
}

// Rank 1 is a forked process that connects, takes part in one all-reduce and exits: rank 0's next
// all-reduce fails as Unavailable (not a hang), and every later call fails at once.
TEST(CollectiveFailure, APeerProcessThatDiesMakesTheNextCollectiveUnavailable) {
  const std::string dir = FreshStoreDir();
  auto options = [&](int rank) {
    GlooOptions o;
    o.rank = rank;
    o.size = 2;
    o.store_dir = dir;
    o.timeout = absl::Seconds(5);
    return o;
  };
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto c = ConnectGloo(options(1));
    if (!c.ok()) _exit(3);
    std::vector<float> v(257, 1.0f);
    if (!(*c)->AllReduceSum(v.data(), v.size()).ok() || v[0] != 2.0f) _exit(4);
    _exit(0);  // dies without a goodbye: its sockets close with the process
  }
  auto c = ConnectGloo(options(0));
  ASSERT_TRUE(c.ok()) << c.status();
  std::vector<float> v(257, 1.0f);
  ASSERT_TRUE((*c)->AllReduceSum(v.data(), v.size()).ok());
  EXPECT_EQ(v[0], 2.0f);
  int wstatus = 0;
  ASSERT_EQ(waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFEXITED(wstatus));
  ASSERT_EQ(WEXITSTATUS(wstatus), 0);
  const absl::Time start = absl::Now();
  absl::Status s = (*c)->AllReduceSum(v.data(), v.size());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("all-reduce"), std::string::npos) << s;
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  EXPECT_EQ((*c)->Barrier().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace muse::collective
