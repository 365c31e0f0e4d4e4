// A fixed pool of compute threads for the CPU kernels of this directory (GEMM, attention).
//
// The calling thread is worker 0 and always takes a share, so a pool of N threads starts N - 1.
// Between jobs the workers spin for a short while (kernels of one forward step follow each other
// within microseconds) and then sleep on a futex (std::atomic::wait), so an idle server burns no
// CPU. One job runs at a time: Run() is not reentrant and must be called from one thread at a time
// (the runner's executor thread).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace muse::kernels::cpu {

// One step of a spin-wait: a pause, and every 256th call a yield, so a pool with more threads than
// free cores (or a descheduled worker) cannot stall a waiter for a whole scheduler quantum.
void SpinPause(int& spins);

// CPUs this process may run on (its affinity mask, so a container limited by cpuset gets its
// share, not the host's core count); at least 1.
int AvailableCpus();

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(thread_index) once on each of the num_threads() threads and returns when all are done.
  // An exception from fn on the calling thread is rethrown after the workers finish; fn must not
  // throw on a worker (that terminates, as for any std::thread).
  void Run(const std::function<void(int)>& fn);

  // Splits [0, n) into num_threads() contiguous ranges (some may be empty) and runs
  // fn(begin, end) on each.
  void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

  // Row ops (RMSNorm, RoPE): ParallelFor when there are at least kMinParallelRows rows; fewer run
  // fn(0, n) on the calling thread, since waking the pool costs more than they take.
  static constexpr int64_t kMinParallelRows = 64;
  void ParallelRows(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
    if (n < kMinParallelRows) {
      fn(0, n);
    } else {
      ParallelFor(n, fn);
    }
  }

  // Runs fn(i) for every i in [0, n), handing out indices one at a time (for items of uneven
  // cost, such as attention over sequences of different lengths).
  void ParallelForDynamic(int64_t n, const std::function<void(int64_t)>& fn);

 private:
  void WorkerLoop(int index);

  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};  // bumped once per job; workers wait on it
  std::atomic<int> pending_{0};          // workers still running the current job
  std::atomic<int> sleepers_{0};         // workers blocked in generation_.wait
  std::atomic<bool> caller_sleeping_{false};
  std::atomic<bool> stop_{false};
};

}  // namespace muse::kernels::cpu
