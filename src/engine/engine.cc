#include "src/engine/engine.h"

#include <chrono>
#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "src/common/logging.h"

namespace muse::engine {

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(std::unique_ptr<runtime::ModelRunner> runner,
                                                       const EngineOptions& options) {
  if (!runner) return absl::InvalidArgumentError("runner must not be null");
  ASSIGN_OR_RETURN(auto core, EngineCore::Create(runner.get(), options));
  return std::unique_ptr<Engine>(new Engine(std::move(runner), std::move(core), options));
}

Engine::Engine(std::unique_ptr<runtime::ModelRunner> runner, std::unique_ptr<EngineCore> core,
               const EngineOptions& options)
    : runner_(std::move(runner)), core_(std::move(core)), options_(options) {
  stats_ = core_->Stats();
  thread_ = std::thread([this] { Loop(); });
}

Engine::~Engine() { Shutdown(); }

void Engine::Shutdown() {
  {
    std::lock_guard lock(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<std::shared_ptr<OutputStream>> Engine::AddRequest(Request request) {
  if (request.arrival_time == absl::InfinitePast()) request.arrival_time = absl::Now();
  if (absl::Status st = core_->ValidateRequest(request); !st.ok()) {
    std::lock_guard lock(mu_);
    ++rejected_;
    return st;
  }
  auto stream = std::make_shared<OutputStream>(request.id);
  {
    std::lock_guard lock(mu_);
    if (stop_) return absl::UnavailableError("engine is shutting down");
    if (!lost_.ok()) return lost_;
    if (auto it = live_.find(request.id); it != live_.end() && !it->second->finished()) {
      ++rejected_;
      return absl::AlreadyExistsError(
          absl::StrCat("request id '", request.id, "' is already live"));
    }
    const int64_t queued = stats_.num_queued_requests + static_cast<int64_t>(inbox_.size());
    if (queued >= options_.scheduler.max_waiting) {
      ++rejected_;
      return absl::ResourceExhaustedError(absl::StrCat("waiting queue is full (", queued,
                                                       " requests, max_waiting ",
                                                       options_.scheduler.max_waiting, ")"));
    }
    live_[request.id] = stream;
    inbox_.push_back({std::move(request), stream});
  }
  cv_.notify_all();
  return stream;
}

absl::Status Engine::Abort(const std::string& request_id) {
  {
    std::lock_guard lock(mu_);
    auto it = live_.find(request_id);
    if (it == live_.end() || it->second->finished()) {
      return absl::NotFoundError(absl::StrCat("no live request '", request_id, "'"));
    }
    aborts_.push_back(request_id);
  }
  cv_.notify_all();
  return absl::OkStatus();
}

EngineStats Engine::Stats() const {
  std::lock_guard lock(mu_);
  EngineStats s = stats_;
  s.requests_rejected = rejected_;
  return s;
}

void Engine::Loop() {
  std::vector<Pending> adds;
  std::vector<std::string> aborts;
  while (true) {
    bool stopping;
    {
      std::unique_lock lock(mu_);
      auto ready = [&] { return stop_ || !inbox_.empty() || !aborts_.empty(); };
      if (!core_->HasWork()) {
        // Idle: wake now and then to notice a runner that failed with nothing running (a
        // tensor-parallel worker that died between requests).
        cv_.wait_for(lock, std::chrono::milliseconds(100), ready);
      }
      stopping = stop_;
      adds.swap(inbox_);
      aborts.swap(aborts_);
    }
    for (auto& p : adds) {
      absl::Status st = core_->AddRequest(std::move(p.request), p.stream);
      if (!st.ok()) {
        // Lost a race (e.g. the queue filled up between check and drain): end the stream.
        RequestOutput out;
        out.request_id = p.stream->request_id();
        out.finished = true;
        out.error = st;
        p.stream->Push(std::move(out));
      }
    }
    adds.clear();
    for (const auto& id : aborts) core_->Abort(id);
    aborts.clear();
    if (stopping) {
      core_->AbortAll(FinishReason::kAbort);
    } else if (core_->HasWork()) {
      const int64_t steps_before = core_->Stats().num_steps;
      // A runner failure is contained by Step (only that step's requests fail). Anything else
      // that escapes (broken invariant, an exception outside the runner) leaves no state to
      // trust: every live request fails with INTERNAL and the thread serves on.
      absl::Status st;
      try {
        st = core_->Step();
      } catch (const std::exception& e) {
        st = absl::InternalError(absl::StrCat("engine step threw: ", e.what()));
      } catch (...) {
        st = absl::InternalError("engine step threw a non-standard exception");
      }
      if (!st.ok()) {
        spdlog::error("engine step failed: {}; failing all requests", st.ToString());
        core_->AbortAll(FinishReason::kError,
                        absl::InternalError(absl::StrCat("engine step failed: ", st.message())));
      } else if (core_->Stats().num_steps == steps_before) {
        // Nothing could run (should not happen: admission always fits an empty pool); do not spin.
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(1));
      }
    }
    if (lost_.ok() && !stopping) {
      if (absl::Status health = runner_->Health(); !health.ok()) {
        spdlog::error("engine: the runner is lost ({}); failing every request", health.ToString());
        const absl::Status lost = absl::UnavailableError(health.message());
        core_->AbortAll(FinishReason::kError, lost);
        {
          std::lock_guard lock(mu_);
          lost_ = lost;
          for (auto& p : inbox_) {  // queued after this iteration's drain
            RequestOutput out;
            out.request_id = p.stream->request_id();
            out.finished = true;
            out.error = lost;
            p.stream->Push(std::move(out));
          }
          inbox_.clear();
        }
        if (options_.on_runner_lost) options_.on_runner_lost(lost);
      }
    }
    const std::vector<std::string> finished = core_->TakeFinished();
    const EngineStats stats = core_->Stats();
    {
      std::lock_guard lock(mu_);
      for (const auto& id : finished) {
        auto it = live_.find(id);
        if (it != live_.end() && it->second->finished()) live_.erase(it);
      }
      stats_ = stats;
      if (stopping) {
        // Streams handed out after the last drain still get their final message.
        for (auto& p : inbox_) {
          RequestOutput out;
          out.request_id = p.stream->request_id();
          out.finished = true;
          out.error = absl::UnavailableError("engine is shutting down");
          p.stream->Push(std::move(out));
        }
        inbox_.clear();
        return;
      }
    }
  }
}

}  // namespace muse::engine
