#include "benchmarks/bench/soak_client.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "benchmarks/bench/client_channel.h"
#include "benchmarks/bench/soak.h"
#include "benchmarks/bench/soak_http.h"
#include "muse/v1/inference.grpc.pb.h"

namespace muse::bench {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Delayed actions (cancels, slow readers waking up) on one thread.
class Timers {
 public:
  Timers() : thread_([this] { Loop(); }) {}
  ~Timers() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void After(double s, std::function<void()> fn) {
    {
      std::lock_guard lock(mu_);
      q_.emplace(Clock::now() +
                     std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s)),
                 std::move(fn));
    }
    cv_.notify_all();
  }

 private:
  void Loop() {
    std::unique_lock lock(mu_);
    while (!stop_) {
      if (q_.empty()) {
        cv_.wait(lock);
        continue;
      }
      if (cv_.wait_until(lock, q_.begin()->first) == std::cv_status::no_timeout) continue;
      if (q_.empty() || q_.begin()->first > Clock::now()) continue;
      auto fn = std::move(q_.begin()->second);
      q_.erase(q_.begin());
      lock.unlock();
      fn();
      fn = nullptr;  // may drop the last reference to a call, outside the lock
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::multimap<Clock::time_point, std::function<void()>> q_;
  bool stop_ = false;
  std::thread thread_;
};

// Counts calls in flight; the dispatcher waits on it.
class InFlight {
 public:
  void Add() {
    std::lock_guard lock(mu_);
    ++n_;
  }
  void Done() {
    std::lock_guard lock(mu_);
    --n_;
    ++done_;
    cv_.notify_all();
  }
  void WaitBelow(int64_t limit) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return n_ < limit; });
  }
  // Until nothing is in flight; false when no call ended for `stall_s` (a hung server).
  bool WaitIdle(double stall_s) {
    std::unique_lock lock(mu_);
    while (n_ > 0) {
      const int64_t before = done_;
      cv_.wait_for(lock, std::chrono::duration<double>(stall_s),
                   [&] { return n_ == 0 || done_ != before; });
      if (n_ > 0 && done_ == before) return false;
    }
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t n_ = 0;
  int64_t done_ = 0;
};

struct CallEnv {
  Timers* timers;
  InFlight* in_flight;
  std::string api_key;
};

void RecordEnd(SoakOutcome* o, const grpc::Status& st, bool cancel_sent) {
  o->cancel_sent = cancel_sent;
  o->code = static_cast<int>(st.error_code());
  o->error = st.error_message();
  o->terminal.fetch_add(1);
}

class StreamCall final : public grpc::ClientReadReactor<v1::GenerateResponse>,
                         public std::enable_shared_from_this<StreamCall> {
 public:
  StreamCall(const CallEnv& env, SoakOutcome* out, SoakPlan plan)
      : env_(env), out_(out), plan_(std::move(plan)) {}

  void Start(v1::Inference::Stub* stub) {
    std::shared_ptr<StreamCall> self = shared_from_this();
    self_ = self;  // until OnDone
    AddAuth(env_.api_key, &ctx_);
    if (plan_.fate == Fate::kDeadline) {
      ctx_.set_deadline(std::chrono::system_clock::now() +
                        std::chrono::duration_cast<std::chrono::system_clock::duration>(
                            std::chrono::duration<double>(plan_.delay_s)));
    }
    const bool slow = plan_.fate == Fate::kSlowThenCancel || plan_.fate == Fate::kSlowThenRead;
    stub->async()->Generate(&ctx_, &plan_.request, this);
    if (slow) AddHold();  // no OnDone before the timer below has acted (binds after Generate)
    if (!slow) StartRead(&resp_);
    StartCall();
    switch (plan_.fate) {
      case Fate::kCancelAtStart:
        Cancel();
        break;
      case Fate::kCancelAfterDelay:
        env_.timers->After(plan_.delay_s, [self] { self->Cancel(); });
        break;
      case Fate::kSlowThenCancel:
        env_.timers->After(plan_.delay_s, [self] {
          self->Cancel();
          self->RemoveHold();
        });
        break;
      case Fate::kSlowThenRead:
        env_.timers->After(plan_.delay_s, [self] {
          self->StartRead(&self->resp_);
          self->RemoveHold();
        });
        break;
      default:
        break;
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    if (out_->finished_messages > 0) out_->message_after_finished = true;
    for (const v1::SampleDelta& s : resp_.samples()) {
      out_->tokens += s.token_ids_size();
      if (s.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) ++out_->samples_finished;
    }
    if (resp_.finished()) ++out_->finished_messages;
    if ((plan_.fate == Fate::kCancelAfterFirstToken && out_->tokens > 0) ||
        (plan_.fate == Fate::kCancelMidDecode && out_->tokens >= plan_.cancel_after_tokens)) {
      if (!cancel_sent_.load()) Cancel();
    }
    StartRead(&resp_);
  }

  void OnDone(const grpc::Status& st) override {
    RecordEnd(out_, st, cancel_sent_.load());
    InFlight* in_flight = env_.in_flight;
    std::shared_ptr<StreamCall> self = std::move(self_);
    in_flight->Done();
    // `self` may be the last reference; a pending timer may hold another.
  }

 private:
  // Timers may call this after OnDone (the call is kept alive by the timer): touches only the
  // call itself.
  void Cancel() {
    cancel_sent_.store(true);
    ctx_.TryCancel();
  }

  CallEnv env_;
  SoakOutcome* out_;
  SoakPlan plan_;
  grpc::ClientContext ctx_;
  v1::GenerateResponse resp_;
  std::atomic<bool> cancel_sent_{false};
  std::shared_ptr<StreamCall> self_;
};

class UnaryCall final : public std::enable_shared_from_this<UnaryCall> {
 public:
  UnaryCall(const CallEnv& env, SoakOutcome* out, SoakPlan plan)
      : env_(env), out_(out), plan_(std::move(plan)) {}

  void Start(v1::Inference::Stub* stub) {
    std::shared_ptr<UnaryCall> self = shared_from_this();
    AddAuth(env_.api_key, &ctx_);
    if (plan_.fate == Fate::kDeadline) {
      ctx_.set_deadline(std::chrono::system_clock::now() +
                        std::chrono::duration_cast<std::chrono::system_clock::duration>(
                            std::chrono::duration<double>(plan_.delay_s)));
    }
    stub->async()->GenerateUnary(&ctx_, &plan_.request, &resp_,
                                 [self](grpc::Status st) { self->Done(st); });
    switch (plan_.fate) {
      case Fate::kCancelAtStart:
        Cancel();
        break;
      case Fate::kCancelAfterDelay:
      case Fate::kCancelAfterFirstToken:
      case Fate::kCancelMidDecode:
        env_.timers->After(plan_.delay_s, [self] { self->Cancel(); });
        break;
      default:
        break;
    }
  }

 private:
  // Timers may call this after OnDone (the call is kept alive by the timer): touches only the
  // call itself.
  void Cancel() {
    cancel_sent_.store(true);
    ctx_.TryCancel();
  }
  void Done(const grpc::Status& st) {
    if (st.ok()) {
      out_->finished_messages = 1;
      for (const v1::Completion& c : resp_.completions()) {
        out_->tokens += c.token_ids_size();
        if (c.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) ++out_->samples_finished;
      }
    }
    RecordEnd(out_, st, cancel_sent_.load());
    env_.in_flight->Done();
  }

  CallEnv env_;
  SoakOutcome* out_;
  SoakPlan plan_;
  grpc::ClientContext ctx_;
  v1::GenerateUnaryResponse resp_;
  std::atomic<bool> cancel_sent_{false};
};

}  // namespace

class SoakClient::Impl {
 public:
  Impl(const SoakConfig& c, bool supports_images) : c_(c), images_(supports_images) {}

  absl::Status Connect() {
    for (int i = 0; i < std::max(1, c_.connections); ++i) {
      channels_.push_back(MakeChannel(c_.target, 1000 + i));
      stubs_.push_back(v1::Inference::NewStub(channels_.back()));
      if (!channels_.back()->WaitForConnected(std::chrono::system_clock::now() +
                                              std::chrono::seconds(10))) {
        return absl::UnavailableError(absl::StrCat("cannot connect to ", c_.target));
      }
    }
    return absl::OkStatus();
  }

  // Requests [first, first + count) of the seeded sequence; `bursts` evenly inside.
  SoakPhase Run(int64_t first, int64_t count, int64_t bursts, const char* label) {
    SoakPhase r;
    r.count = count;
    r.outcomes = std::shared_ptr<SoakOutcome[]>(new SoakOutcome[static_cast<size_t>(count)]);
    // Shared: an HTTP thread may still be returning from Done() when Run returns.
    auto in_flight_ref = std::make_shared<InFlight>();
    InFlight& in_flight = *in_flight_ref;
    CallEnv env{&timers_, &in_flight, c_.api_key};
    const int64_t burst_every = bursts > 0 ? count / (bursts + 1) : 0;
    const auto start = Clock::now();
    int64_t next_report = count / 10;
    for (int64_t i = 0; i < count; ++i) {
      const bool burst_start = burst_every > 0 && i > 0 && i % burst_every == 0 &&
                               i / burst_every <= bursts && i + c_.burst_size <= count;
      int64_t run = 1;
      if (burst_start)
        run = c_.burst_size;
      else
        in_flight.WaitBelow(c_.concurrency);
      for (int64_t k = 0; k < run; ++k, ++i) {
        SoakPlan plan = MakeSoakPlan(c_, images_, first + i, burst_start);
        SoakOutcome* o = &r.outcomes[static_cast<size_t>(i)];
        o->fate = plan.fate;
        o->input = plan.input;
        o->unary = plan.unary;
        o->http = plan.http;
        o->n = plan.n;
        in_flight.Add();
        v1::Inference::Stub* stub = stubs_[static_cast<size_t>(i) % stubs_.size()].get();
        if (plan.http) {  // blocking HTTP/1.1 on its own thread (at most `concurrency` at once)
          std::thread([this, o, in_flight_ref, plan = std::move(plan)] {
            RunSoakHttp(c_.metrics_host, c_.http_port, plan, o);
            in_flight_ref->Done();
          }).detach();
        } else if (plan.unary) {
          std::make_shared<UnaryCall>(env, o, std::move(plan))->Start(stub);
        } else {
          std::make_shared<StreamCall>(env, o, std::move(plan))->Start(stub);
        }
      }
      --i;
      if (i >= next_report) {
        std::cerr << absl::StrFormat("soak %s: %d/%d sent, %.1f s\n", label, i + 1, count,
                                     SecondsSince(start));
        next_report += std::max<int64_t>(1, count / 10);
      }
    }
    if (!in_flight.WaitIdle(c_.stall_timeout_s)) {
      // Report what is stuck and leave those calls their memory: they may still end later.
      int64_t stuck = 0;
      for (int64_t i = 0; i < count; ++i) {
        const SoakOutcome& o = r.outcomes[static_cast<size_t>(i)];
        if (o.terminal.load() == 0 && stuck++ < 20) {
          std::cerr << absl::StrFormat("soak %s: request %d (%s, %s%s) has no terminal status\n",
                                       label, first + i, FateName(o.fate), o.http ? "http " : "",
                                       o.unary ? "unary" : "stream");
        }
      }
      std::cerr << absl::StrFormat("soak %s: no call ended for %.0f s; %d still open\n", label,
                                   c_.stall_timeout_s, stuck);
      new std::shared_ptr<InFlight>(in_flight_ref);    // leaked on purpose
      new std::shared_ptr<SoakOutcome[]>(r.outcomes);  // leaked on purpose
      r.stalled = true;
    }
    r.wall_s = SecondsSince(start);
    std::cerr << absl::StrFormat("soak %s: %d requests ended in %.1f s\n", label, count, r.wall_s);
    return r;
  }

 private:
  const SoakConfig& c_;
  const bool images_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<v1::Inference::Stub>> stubs_;
  Timers timers_;
};

SoakClient::SoakClient(const SoakConfig& config, bool supports_images)
    : impl_(std::make_unique<Impl>(config, supports_images)) {}
SoakClient::~SoakClient() = default;
absl::Status SoakClient::Connect() { return impl_->Connect(); }
SoakPhase SoakClient::Run(int64_t first, int64_t count, int64_t bursts, const char* label) {
  return impl_->Run(first, count, bursts, label);
}

}  // namespace muse::bench
