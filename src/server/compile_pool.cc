#include "src/server/compile_pool.h"

#include <pthread.h>

#include <algorithm>
#include <utility>

namespace muse::server {

CompilePool::CompilePool(int threads) {
  for (int i = 0; i < std::max(1, threads); ++i) {
    threads_.emplace_back([this] {
      pthread_setname_np(pthread_self(), "muse-compile");
      Loop();
    });
  }
}

CompilePool::~CompilePool() { Stop(); }

void CompilePool::Submit(Job job) {
  {
    std::lock_guard lock(mu_);
    if (!stop_) {
      queue_.push_back(std::move(job));
      cv_.notify_one();
      return;
    }
  }
  job(absl::UnavailableError("server is shutting down"));
}

void CompilePool::Stop() {
  std::deque<Job> left;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    left.swap(queue_);
    cv_.notify_all();
  }
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  for (Job& j : left) j(absl::UnavailableError("server is shutting down"));
}

void CompilePool::Loop() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;  // Stop() fails what is queued
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    job(absl::OkStatus());
  }
}

}  // namespace muse::server
