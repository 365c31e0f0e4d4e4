#include "src/tokenizer/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <memory>

namespace muse::tokenizer {

ThreadPool::ThreadPool(size_t num_threads) {
  for (size_t i = 0; i < num_threads; ++i) workers_.emplace_back([this] { Worker(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::Worker() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !tasks_.empty(); });
      if (stop_ && tasks_.empty()) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

void ThreadPool::ParallelFor(size_t n, size_t parallelism, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  // Work is claimed index by index so uneven texts balance across threads.
  struct State {
    std::atomic<size_t> next{0};
    std::mutex mu;
    std::condition_variable done_cv;
    size_t running = 0;
  };
  auto state = std::make_shared<State>();
  auto drain = [state, n, &fn] {
    for (size_t i; (i = state->next.fetch_add(1)) < n;) fn(i);
  };
  const size_t helpers = std::min({parallelism > 0 ? parallelism - 1 : 0, workers_.size(), n - 1});
  state->running = helpers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t h = 0; h < helpers; ++h) {
      tasks_.emplace_back([state, drain] {
        drain();
        std::lock_guard<std::mutex> l(state->mu);
        if (--state->running == 0) state->done_cv.notify_all();
      });
    }
  }
  cv_.notify_all();
  drain();
  std::unique_lock<std::mutex> lock(state->mu);
  state->done_cv.wait(lock, [&] { return state->running == 0; });
}

}  // namespace muse::tokenizer
