// kernels/cpu/thread_pool: coverage, sleeping workers, exceptions.
#include "kernels/cpu/thread_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "tests/kernels/cpu/test_util.h"

namespace muse::kernels::cpu::test {
namespace {

TEST(ThreadPool, ParallelForCoversEveryIndexOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (int64_t n : {0, 1, 2, 7, 100, 1001}) {
      for (int rep = 0; rep < 200; ++rep) {  // many back-to-back jobs: spin/sleep hand-offs
        std::vector<std::atomic<int>> hits(n);
        pool.ParallelFor(n, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << n << " " << i;
        std::vector<std::atomic<int>> dyn(n);
        pool.ParallelForDynamic(n, [&](int64_t i) { dyn[i].fetch_add(1); });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(dyn[i].load(), 1);
      }
    }
  }
}

TEST(ThreadPool, WakesUpAfterSleeping) {
  ThreadPool pool(3);
  for (int rep = 0; rep < 3; ++rep) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // past the spin window
    std::atomic<int> ran{0};
    pool.Run([&](int) { ran.fetch_add(1); });
    EXPECT_EQ(ran.load(), 3);
  }
}

TEST(ThreadPool, CallerExceptionIsRethrownAfterTheWorkersFinish) {
  ThreadPool pool(3);
  std::atomic<int> workers_done{0};
  EXPECT_THROW(pool.Run([&](int i) {
    if (i == 0) throw std::runtime_error("boom");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    workers_done.fetch_add(1);
  }),
               std::runtime_error);
  EXPECT_EQ(workers_done.load(), 2);  // Run waited for them before rethrowing
  std::atomic<int> ran{0};
  pool.Run([&](int) { ran.fetch_add(1); });  // and the pool still works
  EXPECT_EQ(ran.load(), 3);
}

TEST(ThreadPool, AvailableCpusIsPositive) { EXPECT_GE(AvailableCpus(), 1); }

}  // namespace
}  // namespace muse::kernels::cpu::test
