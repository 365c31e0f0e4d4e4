#include "kernels/cpu/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <exception>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MUSE_CPU_RELAX() _mm_pause()
#else
#define MUSE_CPU_RELAX() std::this_thread::yield()
#endif

namespace muse::kernels::cpu {
namespace {

// How long an idle worker spins before sleeping. The gaps between the kernels of one decode step
// (ATen elementwise ops on the calling thread) are tens of microseconds; a step is milliseconds.
constexpr auto kSpin = std::chrono::microseconds(300);

}  // namespace

int AvailableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

void SpinPause(int& spins) {
  MUSE_CPU_RELAX();
  if (++spins % 256 == 0) std::this_thread::yield();
}

ThreadPool::ThreadPool(int num_threads) {
  const int n = std::max(1, num_threads);
  workers_.reserve(n - 1);
  for (int i = 1; i < n; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_release);
  generation_.fetch_add(1);
  generation_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::WorkerLoop(int index) {
  uint64_t seen = 0;
  while (true) {
    uint64_t g = generation_.load(std::memory_order_acquire);
    if (g == seen) {
      const auto until = std::chrono::steady_clock::now() + kSpin;
      int spins = 0;
      while ((g = generation_.load(std::memory_order_acquire)) == seen) {
        SpinPause(spins);
        if (spins % 64 == 0 && std::chrono::steady_clock::now() > until) {
          // seq_cst pairs with Run(): it bumps generation_ then reads sleepers_, so either it sees
          // this sleeper and notifies, or wait() sees the new generation and returns at once.
          sleepers_.fetch_add(1);
          generation_.wait(seen);
          sleepers_.fetch_sub(1);
        }
      }
    }
    seen = g;
    if (stop_.load(std::memory_order_acquire)) return;
    (*job_)(index);
    if (pending_.fetch_sub(1) == 1 && caller_sleeping_.load()) pending_.notify_one();
  }
}

void ThreadPool::Run(const std::function<void(int)>& fn) {
  if (workers_.empty()) {
    fn(0);
    return;
  }
  job_ = &fn;
  pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1);
  if (sleepers_.load() > 0) generation_.notify_all();
  std::exception_ptr error;
  try {
    fn(0);
  } catch (...) {
    error = std::current_exception();  // rethrown once the workers are done with `fn`
  }
  // The calling thread waits the way the workers do: spin first, then sleep.
  int left;
  int spins = 0;
  while ((left = pending_.load(std::memory_order_acquire)) != 0) {
    SpinPause(spins);
    if (spins > 200000) {
      caller_sleeping_.store(true);
      pending_.wait(left);
      caller_sleeping_.store(false);
    }
  }
  if (error) std::rethrow_exception(error);
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  const int t = num_threads();
  if (t == 1 || n <= 1) {
    if (n > 0) fn(0, n);
    return;
  }
  Run([&](int i) {
    const int64_t begin = n * i / t, end = n * (i + 1) / t;
    if (begin < end) fn(begin, end);
  });
}

void ThreadPool::ParallelForDynamic(int64_t n, const std::function<void(int64_t)>& fn) {
  if (num_threads() == 1 || n <= 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<int64_t> next{0};
  Run([&](int) {
    for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) fn(i);
  });
}

}  // namespace muse::kernels::cpu
