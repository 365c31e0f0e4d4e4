// CompilePool on its own (no gRPC, no model): every job runs exactly once -- on a pool thread with
// OK, or with UNAVAILABLE when the pool stops first --, jobs run on up to `threads` threads at
// once, Stop waits for the running ones and fails the queued ones, and a Submit after Stop is
// answered at once on the caller's thread.
#include "src/server/compile_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace muse::server {
namespace {

// Holds the jobs that Pass() it until opened; counts the threads waiting there.
class Gate {
 public:
  void Pass() {
    std::unique_lock lock(mu_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
    --waiting_;
  }
  void Open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  bool WaitForWaiting(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return waiting_ == n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
  int waiting_ = 0;
};

TEST(CompilePoolTest, RunsEveryJobOnceOnPoolThreads) {
  CompilePool pool(2);
  constexpr int kJobs = 50;
  std::mutex mu;
  std::vector<int> runs(kJobs, 0);
  std::vector<std::string> names;
  std::atomic<int> done{0};
  for (int i = 0; i < kJobs; ++i) {
    pool.Submit([&, i](absl::Status st) {
      EXPECT_TRUE(st.ok()) << st;
      char name[16] = {};
      pthread_getname_np(pthread_self(), name, sizeof(name));
      std::lock_guard lock(mu);
      ++runs[i];
      names.emplace_back(name);
      ++done;
    });
  }
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (done.load() < kJobs && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  pool.Stop();
  ASSERT_EQ(done.load(), kJobs);
  for (int r : runs) EXPECT_EQ(r, 1);
  for (const std::string& n : names) EXPECT_EQ(n, "muse-compile");
}

TEST(CompilePoolTest, RunsUpToThreadsJobsAtOnceAndStopFailsTheQueuedOnes) {
  Gate gate;
  CompilePool pool(2);
  std::mutex mu;
  std::vector<absl::Status> results(5);
  std::vector<std::thread::id> threads(5);
  for (int i = 0; i < 5; ++i) {
    pool.Submit([&, i](absl::Status st) {
      if (st.ok()) gate.Pass();
      std::lock_guard lock(mu);
      results[i] = st;
      threads[i] = std::this_thread::get_id();
    });
  }
  // Two jobs are held at the gate (one per thread); three wait in the queue.
  ASSERT_TRUE(gate.WaitForWaiting(2));
  // Stop fails the queued ones, but must wait for the two held ones: open the gate from aside.
  std::thread opener([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    gate.Open();
  });
  pool.Stop();
  opener.join();
  int ok = 0, unavailable = 0;
  for (int i = 0; i < 5; ++i) {
    if (results[i].ok()) {
      ++ok;
      EXPECT_NE(threads[i], std::this_thread::get_id());
    } else {
      EXPECT_EQ(results[i].code(), absl::StatusCode::kUnavailable) << results[i];
      ++unavailable;
    }
  }
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(unavailable, 3);
}

TEST(CompilePoolTest, SubmitAfterStopIsUnavailableOnTheCallersThread) {
  CompilePool pool(1);
  pool.Stop();
  pool.Stop();  // idempotent
  absl::Status got = absl::OkStatus();
  std::thread::id where;
  pool.Submit([&](absl::Status st) {
    got = st;
    where = std::this_thread::get_id();
  });
  EXPECT_EQ(got.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(where, std::this_thread::get_id());
}

}  // namespace
}  // namespace muse::server
