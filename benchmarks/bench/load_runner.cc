#include "benchmarks/bench/load_runner.h"

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "benchmarks/bench/client_channel.h"
#include "muse/v1/inference.grpc.pb.h"

namespace muse::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

v1::GenerateRequest ToProto(const RunConfig& config, const BenchRequest& b, int64_t index) {
  v1::GenerateRequest req;
  if (!config.model.empty()) req.set_model(config.model);
  req.set_request_id(absl::StrCat(config.request_id_prefix, index));
  if (!b.image_png.empty()) {
    v1::ChatMessage* m = req.add_messages();
    m->set_role("user");
    m->add_content()->set_image(b.image_png);
    m->add_content()->set_text(b.prompt_text);
  } else if (!b.prompt_ids.empty()) {
    req.mutable_prompt_token_ids()->Assign(b.prompt_ids.begin(), b.prompt_ids.end());
  } else {
    req.set_prompt(b.prompt_text);
  }
  req.mutable_sampling()->set_temperature(config.temperature);
  if (!config.json_schema.empty())
    req.mutable_response_format()->set_json_schema(config.json_schema);
  req.mutable_stopping()->set_max_tokens(static_cast<int32_t>(b.max_tokens));
  req.mutable_stopping()->set_ignore_eos(b.ignore_eos);
  if (b.priority == "interactive") req.set_priority(v1::PRIORITY_INTERACTIVE);
  if (b.priority == "batch") req.set_priority(v1::PRIORITY_BATCH);
  return req;
}

// One request's stream. Owns itself from Start() until OnDone().
class StreamCall final : public grpc::ClientReadReactor<v1::GenerateResponse> {
 public:
  StreamCall(CallSlot slot, v1::GenerateRequest request)
      : slot_(std::move(slot)), record_(slot_.record), request_(std::move(request)) {}
  void Start(v1::Inference::Stub* stub, const RunConfig& config);
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  CallSlot slot_;
  RequestRecord* record_;
  v1::GenerateRequest request_;
  v1::GenerateResponse response_;
  grpc::ClientContext ctx_;
  int64_t streamed_tokens_ = 0;
  bool finished_ = false;
  bool have_usage_ = false;
};

class GrpcBackend final : public Backend {
 public:
  explicit GrpcBackend(const RunConfig& config) : config_(config) {}
  absl::Status Connect() override {
    for (int i = 0; i < std::max(1, config_.connections); ++i) {
      channels_.push_back(MakeChannel(config_.target, i));
      stubs_.push_back(v1::Inference::NewStub(channels_.back()));
    }
    for (auto& ch : channels_) {
      if (!ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
        return absl::UnavailableError(absl::StrCat("cannot connect to ", config_.target));
      }
    }
    return absl::OkStatus();
  }
  void Start(BenchRequest b, int64_t index, CallSlot slot) override {
    auto* call = new StreamCall(std::move(slot), ToProto(config_, b, index));
    call->Start(stubs_[static_cast<size_t>(index) % stubs_.size()].get(), config_);
  }

 private:
  const RunConfig& config_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<v1::Inference::Stub>> stubs_;
};

class Runner {
 public:
  Runner(const RunConfig& config, const Workload& workload, RunProgress* progress)
      : config_(config), workload_(workload), progress_(progress) {}

  absl::StatusOr<RunResult> Run() {
    backend_ = config_.backend == BackendKind::kGrpc
                   ? MakeGrpcBackend(config_)
                   : MakeOpenAiBackend(config_, config_.backend == BackendKind::kOpenAiChat);
    if (absl::Status st = backend_->Connect(); !st.ok()) return st;
    ArrivalProcess arrivals(config_.arrival);
    const bool by_duration = config_.duration_s > 0;
    // A fixed-count run builds every request before t = 0 so the dispatcher only starts calls.
    std::vector<BenchRequest> prebuilt;
    if (!by_duration) {
      prebuilt.reserve(static_cast<size_t>(config_.num_prompts));
      for (int64_t i = 0; i < config_.num_prompts; ++i) {
        prebuilt.push_back(workload_.Make(i + config_.index_offset));
        if (absl::Status st = backend_->Prepare(&prebuilt.back()); !st.ok()) return st;
      }
    }
    start_ = Clock::now();
    const double start_unix =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    for (int64_t i = 0; by_duration || i < config_.num_prompts; ++i) {
      const double t = arrivals.Next();
      if (by_duration && t >= config_.duration_s) break;
      std::this_thread::sleep_until(
          start_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(t)));
      {
        std::unique_lock lock(mu_);
        if (config_.max_concurrency > 0) {
          cv_.wait(lock, [&] { return in_flight_ < config_.max_concurrency; });
        }
        ++in_flight_;
        records_.emplace_back();
      }
      if (by_duration && Now() >= config_.duration_s) {
        std::lock_guard lock(mu_);
        --in_flight_;
        records_.pop_back();
        break;
      }
      RequestRecord* rec = &records_.back();  // deque: stable while others are appended
      BenchRequest b;
      if (by_duration) {
        b = workload_.Make(i + config_.index_offset);
        if (absl::Status st = backend_->Prepare(&b); !st.ok()) {
          rec->status_code = static_cast<int>(st.code());
          rec->error = std::string(st.message());
        }
      } else {
        b = std::move(prebuilt[static_cast<size_t>(i)]);
      }
      rec->index = i;
      rec->priority = b.priority;
      rec->scheduled_s = t;
      rec->expected_prompt_tokens = b.expected_prompt_tokens;
      rec->expected_output_tokens = b.max_tokens;
      rec->start_s = Now();
      if (progress_) progress_->sent.fetch_add(1, std::memory_order_relaxed);
      if (rec->status_code != 0) {
        CallDone(false);
        continue;
      }
      backend_->Start(std::move(b), i,
                      CallSlot{start_, rec, progress_, [this](bool ok) { CallDone(ok); }});
    }
    Clock::time_point last_done;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return in_flight_ == 0; });
      last_done = last_done_;
    }
    RunResult result;
    result.start = start_;
    result.start_unix_s = start_unix;
    result.duration_s = records_.empty() ? 0.0 : Seconds(last_done - start_);
    result.records.assign(std::make_move_iterator(records_.begin()),
                          std::make_move_iterator(records_.end()));
    return result;
  }

  double Now() const { return Seconds(Clock::now() - start_); }

  void CallDone(bool ok) {
    if (progress_) {
      progress_->done.fetch_add(1, std::memory_order_relaxed);
      if (!ok) progress_->failed.fetch_add(1, std::memory_order_relaxed);
    }
    std::lock_guard lock(mu_);
    --in_flight_;
    last_done_ = std::max(last_done_, Clock::now());
    cv_.notify_all();
  }

 private:
  const RunConfig& config_;
  const Workload& workload_;
  RunProgress* progress_;
  std::unique_ptr<Backend> backend_;  // destroyed after every call is done
  Clock::time_point start_;
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t in_flight_ = 0;
  Clock::time_point last_done_{};
  std::deque<RequestRecord> records_;
};

void StreamCall::Start(v1::Inference::Stub* stub, const RunConfig& config) {
  AddAuth(config.api_key, &ctx_);
  if (config.request_timeout_s > 0) {
    ctx_.set_deadline(std::chrono::system_clock::now() +
                      std::chrono::duration_cast<std::chrono::system_clock::duration>(
                          std::chrono::duration<double>(config.request_timeout_s)));
  }
  stub->async()->Generate(&ctx_, &request_, this);
  StartRead(&response_);
  StartCall();
}

void StreamCall::OnReadDone(bool ok) {
  if (!ok) return;  // stream over; OnDone follows
  const double t = slot_.Now();
  int64_t tokens = 0;
  bool text = false;
  for (const v1::SampleDelta& s : response_.samples()) {
    tokens += s.token_ids_size();
    text = text || !s.text().empty();
  }
  if (tokens > 0 || text) {
    RecordChunk(record_, t, static_cast<int32_t>(tokens));
    streamed_tokens_ += tokens;
    if (RunProgress* p = slot_.progress)
      p->output_tokens.fetch_add(tokens, std::memory_order_relaxed);
  }
  if (response_.has_usage()) {
    have_usage_ = true;
    record_->prompt_tokens = response_.usage().prompt_tokens();
    record_->cached_tokens = response_.usage().cached_tokens();
    record_->output_tokens = response_.usage().completion_tokens();
  }
  finished_ = finished_ || response_.finished();
  StartRead(&response_);
}

void StreamCall::OnDone(const grpc::Status& status) {
  record_->end_s = slot_.Now();
  record_->e2e_s = record_->chunk_s.empty() ? 0.0 : record_->chunk_s.back() - record_->start_s;
  if (!have_usage_) record_->output_tokens = streamed_tokens_;
  record_->status_code = static_cast<int>(status.error_code());
  record_->error = status.error_message();
  if (status.ok() && !finished_) {
    record_->status_code = static_cast<int>(grpc::StatusCode::DATA_LOSS);
    record_->error = "stream closed OK without a finished message";
  }
  const bool ok = record_->success();
  std::function<void(bool)> done = std::move(slot_.done);
  delete this;
  done(ok);
}

}  // namespace

const char* BackendName(BackendKind kind) {
  switch (kind) {
    case BackendKind::kGrpc:
      return "grpc";
    case BackendKind::kOpenAiChat:
      return "openai-chat";
    case BackendKind::kOpenAiCompletions:
      return "openai-completions";
  }
  return "?";
}

absl::StatusOr<BackendKind> ParseBackend(const std::string& name) {
  for (BackendKind k :
       {BackendKind::kGrpc, BackendKind::kOpenAiChat, BackendKind::kOpenAiCompletions}) {
    if (name == BackendName(k)) return k;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--backend: '", name, "' is not grpc, openai-chat or openai-completions"));
}

std::unique_ptr<Backend> MakeGrpcBackend(const RunConfig& config) {
  return std::make_unique<GrpcBackend>(config);
}

absl::StatusOr<RunResult> RunLoad(const RunConfig& config, const Workload& workload,
                                  RunProgress* progress) {
  Runner runner(config, workload, progress);
  return runner.Run();
}

absl::StatusOr<ModelFacts> FetchModelFacts(const RunConfig& config, double wait_s,
                                           std::string* model_id) {
  auto stub = v1::Inference::NewStub(MakeChannel(config.target, -1));
  const auto give_up = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(wait_s));
  while (true) {
    grpc::ClientContext ctx;
    AddAuth(config.api_key, &ctx);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ModelInfoRequest req;
    req.set_model(config.model);
    v1::ModelInfoResponse resp;
    grpc::Status st = stub->ModelInfo(&ctx, req, &resp);
    if (st.ok()) {
      if (model_id) *model_id = resp.id();
      return ModelFacts{resp.vocab_size(), resp.context_length(), resp.supports_images(),
                        resp.supports_images() ? resp.image_token_id() : -1,
                        resp.supports_audio() ? resp.audio_token_id() : -1};
    }
    const bool retry = st.error_code() == grpc::StatusCode::UNAVAILABLE ||
                       st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
    if (!retry || Clock::now() >= give_up) {
      return absl::Status(static_cast<absl::StatusCode>(st.error_code()),
                          absl::StrCat("ModelInfo on ", config.target, ": ", st.error_message()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

TokenizeFn RemoteTokenizer(const RunConfig& config) {
  std::shared_ptr<v1::Inference::Stub> stub =
      v1::Inference::NewStub(MakeChannel(config.target, -1));
  return [stub, config](const std::string& text) -> absl::StatusOr<std::vector<int32_t>> {
    grpc::ClientContext ctx;
    AddAuth(config.api_key, &ctx);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::TokenizeRequest req;
    req.set_model(config.model);
    req.set_prompt(text);
    v1::TokenizeResponse resp;
    grpc::Status st = stub->Tokenize(&ctx, req, &resp);
    if (!st.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(st.error_code()),
                          absl::StrCat("Tokenize: ", st.error_message()));
    }
    return std::vector<int32_t>(resp.token_ids().begin(), resp.token_ids().end());
  };
}

}  // namespace muse::bench
