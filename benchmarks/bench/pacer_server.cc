#include "benchmarks/bench/pacer_server.h"

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <mutex>
#include <queue>
#include <thread>

#include "absl/strings/str_cat.h"
#include "muse/v1/inference.grpc.pb.h"

namespace muse::bench {

class PacedStream;

struct PacerServer::Impl {
  PacerConfig config;
  int port = 0;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<grpc::Service> service;

  // Timer: due writes ordered by time. One thread fires them all.
  using Item = std::pair<Clock::time_point, PacedStream*>;
  std::mutex mu;
  std::condition_variable cv;
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> due;
  bool stop = false;
  std::thread timer;

  mutable std::mutex results_mu;
  std::map<std::string, std::vector<Clock::time_point>> write_times;
  std::map<std::string, Clock::time_point> start_times;

  void Schedule(Clock::time_point t, PacedStream* s) {
    std::lock_guard lock(mu);
    due.emplace(t, s);
    cv.notify_one();
  }
  void TimerLoop();
};

class PacedStream final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  PacedStream(PacerServer::Impl* impl, std::string request_id)
      : impl_(impl), request_id_(std::move(request_id)), t0_(PacerServer::Clock::now()) {
    ScheduleNext();
  }

  // Called by the timer thread when message k_ is due.
  void Fire() {
    response_.Clear();
    response_.set_request_id(request_id_);
    v1::SampleDelta* s = response_.add_samples();
    s->add_token_ids(static_cast<int32_t>(1000 + k_));
    s->set_text("x");
    if (k_ + 1 == impl_->config.messages) {
      s->set_finish_reason(v1::FINISH_REASON_LENGTH);
      response_.set_finished(true);
      response_.mutable_usage()->set_prompt_tokens(0);
      response_.mutable_usage()->set_completion_tokens(impl_->config.messages);
    }
    writes_.push_back(PacerServer::Clock::now());
    StartWrite(&response_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
      return;
    }
    ++k_;
    if (k_ == impl_->config.messages) {
      Finish(grpc::Status::OK);
    } else {
      ScheduleNext();
    }
  }

  void OnDone() override {
    {
      std::lock_guard lock(impl_->results_mu);
      impl_->write_times[request_id_] = std::move(writes_);
      impl_->start_times[request_id_] = t0_;
    }
    delete this;
  }

 private:
  void ScheduleNext() {
    const double at = impl_->config.first_delay_s + k_ * impl_->config.interval_s;
    impl_->Schedule(t0_ + std::chrono::duration_cast<PacerServer::Clock::duration>(
                              std::chrono::duration<double>(at)),
                    this);
  }

  PacerServer::Impl* impl_;
  std::string request_id_;
  PacerServer::Clock::time_point t0_;
  int k_ = 0;
  v1::GenerateResponse response_;
  std::vector<PacerServer::Clock::time_point> writes_;
};

void PacerServer::Impl::TimerLoop() {
  std::unique_lock lock(mu);
  while (!stop) {
    if (due.empty()) {
      cv.wait(lock);
      continue;
    }
    const auto t = due.top().first;
    if (Clock::now() < t) {
      cv.wait_until(lock, t);
      continue;
    }
    PacedStream* s = due.top().second;
    due.pop();
    lock.unlock();  // StartWrite may complete inline and reschedule
    s->Fire();
    lock.lock();
  }
}

namespace {

class PacerService final : public v1::Inference::CallbackService {
 public:
  explicit PacerService(PacerServer::Impl* impl) : impl_(impl) {}

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext*, const v1::GenerateRequest* req) override {
    return new PacedStream(impl_, req->request_id());
  }

  grpc::ServerUnaryReactor* ModelInfo(grpc::CallbackServerContext* ctx, const v1::ModelInfoRequest*,
                                      v1::ModelInfoResponse* resp) override {
    resp->set_id("pacer");
    resp->set_architecture("pacer");
    resp->set_context_length(1 << 20);
    resp->set_vocab_size(impl_->config.vocab_size);
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }

 private:
  PacerServer::Impl* impl_;
};

}  // namespace

PacerServer::PacerServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<PacerServer>> PacerServer::Start(const PacerConfig& config,
                                                                int port) {
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  impl->service = std::make_unique<PacerService>(impl.get());
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat("127.0.0.1:", port), grpc::InsecureServerCredentials(),
                           &impl->port);
  builder.RegisterService(impl->service.get());
  impl->server = builder.BuildAndStart();
  if (!impl->server || impl->port == 0) return absl::UnavailableError("pacer: cannot listen");
  impl->timer = std::thread([p = impl.get()] { p->TimerLoop(); });
  return std::unique_ptr<PacerServer>(new PacerServer(std::move(impl)));
}

PacerServer::~PacerServer() {
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  {
    std::lock_guard lock(impl_->mu);
    impl_->stop = true;
    impl_->cv.notify_all();
  }
  impl_->timer.join();
  impl_->server->Wait();
}

int PacerServer::port() const { return impl_->port; }

std::map<std::string, std::vector<PacerServer::Clock::time_point>> PacerServer::WriteTimes() const {
  std::lock_guard lock(impl_->results_mu);
  return impl_->write_times;
}

std::map<std::string, PacerServer::Clock::time_point> PacerServer::StartTimes() const {
  std::lock_guard lock(impl_->results_mu);
  return impl_->start_times;
}

}  // namespace muse::bench
