// The engine -> gRPC handoff for generation results.
//
// A request's OutputStream notify hook runs on the engine thread, which must do no gRPC or
// protobuf work. So the hook only raises the stream's Signal: one atomic exchange and, the first
// time since the last pump, one push onto this pool's queue. A pump thread then runs the
// reactor's Pump() (merge the queued outputs, serialise, StartWrite / Finish). Raises that arrive
// before the queued signal is taken coalesce into that one pump; a raise after it is taken (the
// flag is cleared before Pump runs) queues the stream again, so no output is left unpumped.
//
// Lifetime: a Signal holds only a weak reference to its reactor; the pump thread locks it for the
// duration of Pump(). A reactor that finished (OnDone) while its signal was queued is simply
// skipped. The engine thread never holds a strong reference, so it never destroys a reactor.
// Signals share the queue by shared_ptr, so a raise after Stop() (or after the pool is gone) is a
// no-op rather than a use-after-free.
#pragma once

#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace muse::server {

// What a pump thread runs. Implemented by the Generate reactors.
class Pumpable {
 public:
  virtual void Pump() = 0;

 protected:
  ~Pumpable() = default;
};

class PumpPool {
 public:
  class Signal;

 private:
  struct Queue {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::shared_ptr<Signal>> ready;  // each signal at most once (Signal::queued_)
    bool stop = false;
    int64_t raises = 0;  // raises that queued a signal (the rest coalesced)
    int64_t pumps = 0;   // Pump() calls made (targets still alive)
  };

 public:
  // One stream's ready flag. Raise() is what the OutputStream hook calls.
  class Signal : public std::enable_shared_from_this<Signal> {
   public:
    Signal(std::shared_ptr<Queue> queue, std::weak_ptr<Pumpable> target)
        : queue_(std::move(queue)), target_(std::move(target)) {}

    // Any thread. Never runs the target; holds the queue mutex for one push at most.
    void Raise() {
      if (queued_.exchange(true, std::memory_order_acq_rel)) return;  // a pump is already queued
      {
        std::lock_guard lock(queue_->mu);
        if (queue_->stop) return;
        queue_->ready.push_back(shared_from_this());
        ++queue_->raises;
      }
      queue_->cv.notify_one();
    }

   private:
    friend class PumpPool;
    const std::shared_ptr<Queue> queue_;
    const std::weak_ptr<Pumpable> target_;
    std::atomic<bool> queued_{false};
  };

  explicit PumpPool(int num_threads, const std::string& thread_name = "muse-pump")
      : queue_(std::make_shared<Queue>()) {
    if (num_threads < 1) num_threads = 1;
    for (int i = 0; i < num_threads; ++i) {
      threads_.emplace_back([this, name = thread_name] {
        pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
        Worker();
      });
    }
  }
  ~PumpPool() { Stop(); }
  PumpPool(const PumpPool&) = delete;
  PumpPool& operator=(const PumpPool&) = delete;

  std::shared_ptr<Signal> NewSignal(std::weak_ptr<Pumpable> target) {
    return std::make_shared<Signal>(queue_, std::move(target));
  }

  // Pumps what is already queued, then joins the threads; later raises are dropped. Idempotent.
  // Call it once nothing needs pumping any more (after gRPC has shut down).
  void Stop() {
    {
      std::lock_guard lock(queue_->mu);
      queue_->stop = true;
    }
    queue_->cv.notify_all();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

  int64_t raises() const {
    std::lock_guard lock(queue_->mu);
    return queue_->raises;
  }
  int64_t pumps() const {
    std::lock_guard lock(queue_->mu);
    return queue_->pumps;
  }

 private:
  void Worker() {
    Queue& q = *queue_;
    std::unique_lock lock(q.mu);
    while (true) {
      q.cv.wait(lock, [&] { return q.stop || !q.ready.empty(); });
      if (q.ready.empty()) return;  // stopping and drained
      std::shared_ptr<Signal> signal = std::move(q.ready.front());
      q.ready.pop_front();
      lock.unlock();
      // Cleared before Pump: an output pushed after Pump has drained the stream raises again.
      signal->queued_.store(false, std::memory_order_release);
      bool pumped = false;
      if (std::shared_ptr<Pumpable> target = signal->target_.lock()) {
        target->Pump();
        pumped = true;
      }  // the last reference to a finished reactor may drop here: a pump thread, not the engine
      signal.reset();
      lock.lock();
      if (pumped) ++q.pumps;
    }
  }

  const std::shared_ptr<Queue> queue_;
  std::vector<std::thread> threads_;
};

}  // namespace muse::server
