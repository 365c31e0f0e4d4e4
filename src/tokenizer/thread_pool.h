// Fixed-size worker pool for EncodeBatch; ParallelFor blocks until every index ran.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace muse::tokenizer {

class ThreadPool {
 public:
  explicit ThreadPool(size_t num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t size() const { return workers_.size(); }
  // Runs fn(i) for i in [0, n) on up to `parallelism` workers (the caller helps too).
  void ParallelFor(size_t n, size_t parallelism, const std::function<void(size_t)>& fn);

 private:
  void Worker();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace muse::tokenizer
