// PumpPool: the engine -> gRPC handoff. Raise() never runs the target, raises coalesce while a
// pump is queued, a raise during a pump pumps again (no lost wake-up), a target that dies while
// its signal is queued is skipped, and a running pump keeps its target alive.
#include "src/server/pump_pool.h"

#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

namespace muse::server {
namespace {

using namespace std::chrono_literals;

bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// A one-shot gate: Pump() of a Blocker waits on it.
class Gate {
 public:
  void Open() {
    {
      std::lock_guard lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  void Wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Records its pumps; optionally runs `on_pump` inside Pump (to block, or to raise again).
class Target : public Pumpable {
 public:
  explicit Target(std::atomic<int>* destroyed = nullptr) : destroyed_(destroyed) {}
  ~Target() {
    destroyed_on_ = std::this_thread::get_id();
    if (destroyed_) destroyed_->fetch_add(1);
  }
  void Pump() override {
    {
      std::lock_guard lock(mu_);
      threads_.push_back(std::this_thread::get_id());
      char name[16] = {};
      pthread_getname_np(pthread_self(), name, sizeof(name));
      thread_names_.emplace_back(name);
    }
    pumps_.fetch_add(1);
    if (on_pump) on_pump();
  }
  int pumps() const { return pumps_.load(); }
  std::vector<std::thread::id> threads() {
    std::lock_guard lock(mu_);
    return threads_;
  }
  std::vector<std::string> thread_names() {
    std::lock_guard lock(mu_);
    return thread_names_;
  }

  std::function<void()> on_pump;
  static inline std::thread::id destroyed_on_;

 private:
  std::atomic<int>* destroyed_;
  std::atomic<int> pumps_{0};
  std::mutex mu_;
  std::vector<std::thread::id> threads_;
  std::vector<std::string> thread_names_;
};

TEST(PumpPoolTest, RaiseNeverRunsTheTargetOnTheRaisingThread) {
  PumpPool pool(2);
  auto t = std::make_shared<Target>();
  auto signal = pool.NewSignal(t);
  signal->Raise();
  ASSERT_TRUE(WaitFor([&] { return t->pumps() == 1; }));
  EXPECT_NE(t->threads()[0], std::this_thread::get_id());
  EXPECT_EQ(t->thread_names()[0], "muse-pump");
}

TEST(PumpPoolTest, RaiseReturnsWhileEveryPumpThreadIsBusy) {
  PumpPool pool(1);
  Gate gate;
  auto blocker = std::make_shared<Target>();
  blocker->on_pump = [&] { gate.Wait(); };
  auto b = pool.NewSignal(blocker);
  b->Raise();
  ASSERT_TRUE(WaitFor([&] { return blocker->pumps() == 1; }));
  // The "engine" keeps raising other streams while the only pump thread is stuck.
  std::vector<std::shared_ptr<Target>> targets;
  std::vector<std::shared_ptr<PumpPool::Signal>> signals;
  for (int i = 0; i < 100; ++i) {
    targets.push_back(std::make_shared<Target>());
    signals.push_back(pool.NewSignal(targets.back()));
  }
  const auto start = std::chrono::steady_clock::now();
  for (auto& s : signals) s->Raise();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  for (auto& t : targets) EXPECT_EQ(t->pumps(), 0);
  gate.Open();
  ASSERT_TRUE(WaitFor([&] {
    for (auto& t : targets) {
      if (t->pumps() != 1) return false;
    }
    return true;
  }));
}

TEST(PumpPoolTest, RaisesWhileQueuedCoalesceIntoOnePump) {
  PumpPool pool(1);
  Gate gate;
  auto blocker = std::make_shared<Target>();
  blocker->on_pump = [&] { gate.Wait(); };
  auto b = pool.NewSignal(blocker);
  b->Raise();
  ASSERT_TRUE(WaitFor([&] { return blocker->pumps() == 1; }));
  auto t = std::make_shared<Target>();
  auto signal = pool.NewSignal(t);
  for (int i = 0; i < 1000; ++i) signal->Raise();  // 1000 engine steps for one stream
  EXPECT_EQ(pool.raises(), 2);                     // the blocker's and one for `t`
  gate.Open();
  ASSERT_TRUE(WaitFor([&] { return t->pumps() == 1; }));
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(t->pumps(), 1);
  EXPECT_EQ(pool.pumps(), 2);
}

TEST(PumpPoolTest, RaiseDuringAPumpPumpsAgain) {
  // An output pushed while Pump runs (after it drained the stream) must not be stranded.
  PumpPool pool(2);
  auto t = std::make_shared<Target>();
  auto signal = pool.NewSignal(t);
  std::atomic<int> raised_inside{0};
  t->on_pump = [&] {
    if (raised_inside.fetch_add(1) < 3) signal->Raise();
  };
  signal->Raise();
  ASSERT_TRUE(WaitFor([&] { return t->pumps() == 4; }));
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(t->pumps(), 4);
}

TEST(PumpPoolTest, TargetDestroyedWhileItsSignalIsQueuedIsSkipped) {
  PumpPool pool(1);
  Gate gate;
  auto blocker = std::make_shared<Target>();
  blocker->on_pump = [&] { gate.Wait(); };
  auto b = pool.NewSignal(blocker);
  b->Raise();
  ASSERT_TRUE(WaitFor([&] { return blocker->pumps() == 1; }));

  std::atomic<int> destroyed{0};
  auto t = std::make_shared<Target>(&destroyed);
  auto signal = pool.NewSignal(t);
  signal->Raise();                 // queued behind the blocker
  t.reset();                       // the reactor's OnDone drops the last reference
  EXPECT_EQ(destroyed.load(), 1);  // the queued signal did not keep it alive
  signal->Raise();  // a late engine push (final message) after OnDone: still harmless
  gate.Open();
  pool.Stop();  // runs the queue dry
  EXPECT_EQ(pool.raises(), 2);
  EXPECT_EQ(pool.pumps(), 1);  // only the blocker was pumped
}

TEST(PumpPoolTest, RunningPumpKeepsTheTargetAliveAndDestroysItOffTheEngineThread) {
  PumpPool pool(1);
  Gate entered, release;
  std::atomic<int> destroyed{0};
  auto t = std::make_shared<Target>(&destroyed);
  t->on_pump = [&] {
    entered.Open();
    release.Wait();
  };
  auto signal = pool.NewSignal(t);
  signal->Raise();
  entered.Wait();
  t.reset();  // OnDone while the pump is running
  EXPECT_EQ(destroyed.load(), 0);
  release.Open();
  ASSERT_TRUE(WaitFor([&] { return destroyed.load() == 1; }));
  EXPECT_NE(Target::destroyed_on_, std::this_thread::get_id());
}

TEST(PumpPoolTest, RaiseAfterStopOrAfterThePoolIsGoneIsANoOp) {
  auto t = std::make_shared<Target>();
  std::shared_ptr<PumpPool::Signal> signal;
  {
    PumpPool pool(1);
    signal = pool.NewSignal(t);
    pool.Stop();
    signal->Raise();
    EXPECT_EQ(pool.raises(), 0);
  }
  signal->Raise();  // a stream that outlives the server
  EXPECT_EQ(t->pumps(), 0);
}

// Many "engine" threads push outputs and raise; targets come and go. Every output pushed to a
// live target is drained by some later pump: no lost wake-ups, whatever the interleaving.
TEST(PumpPoolTest, StressNoLostWakeUps) {
  constexpr int kTargets = 64, kProducers = 3, kPushes = 3000;
  struct Counted : Pumpable {
    std::atomic<int> pending{0};
    std::atomic<int> drained{0};
    void Pump() override { drained.fetch_add(pending.exchange(0)); }
  };
  PumpPool pool(2);
  std::vector<std::shared_ptr<Counted>> targets;
  std::vector<std::shared_ptr<PumpPool::Signal>> signals;
  for (int i = 0; i < kTargets; ++i) {
    targets.push_back(std::make_shared<Counted>());
    signals.push_back(pool.NewSignal(targets.back()));
  }
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      std::mt19937 rng(p);
      for (int i = 0; i < kPushes; ++i) {
        const int k = static_cast<int>(rng() % kTargets);
        targets[k]->pending.fetch_add(1);  // "push" (targets are kept alive by `targets`)
        signals[k]->Raise();
      }
    });
  }
  for (auto& t : producers) t.join();
  ASSERT_TRUE(WaitFor([&] {
    for (auto& t : targets) {
      if (t->pending.load() != 0) return false;
    }
    return true;
  }));
  int total = 0;
  for (auto& t : targets) total += t->drained.load();
  EXPECT_EQ(total, kProducers * kPushes);
  EXPECT_LE(pool.pumps(), pool.raises());
}

}  // namespace
}  // namespace muse::server
