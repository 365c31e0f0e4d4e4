#include "src/engine/output_stream.h"

#include <chrono>

namespace muse::engine {

std::optional<RequestOutput> OutputStream::PopLocked() {
  if (queue_.empty()) return std::nullopt;
  RequestOutput out = std::move(queue_.front());
  queue_.pop_front();
  return out;
}

std::optional<RequestOutput> OutputStream::Next() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return !queue_.empty() || closed_; });
  return PopLocked();
}

std::optional<RequestOutput> OutputStream::Next(absl::Duration timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
               [&] { return !queue_.empty() || closed_; });
  return PopLocked();
}

std::optional<RequestOutput> OutputStream::TryNext() {
  std::lock_guard lock(mu_);
  return PopLocked();
}

bool OutputStream::finished() const {
  std::lock_guard lock(mu_);
  return closed_;
}

void OutputStream::SetNotify(std::function<void()> notify) {
  std::function<void()> call_now;
  {
    std::lock_guard lock(mu_);
    notify_ = std::move(notify);
    if (!queue_.empty() || closed_) call_now = notify_;
  }
  if (call_now) call_now();
}

void OutputStream::Push(RequestOutput output) {
  std::function<void()> notify;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = output.finished;
    queue_.push_back(std::move(output));
    notify = notify_;
  }
  cv_.notify_all();
  if (notify) notify();
}

}  // namespace muse::engine
