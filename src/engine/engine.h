// Engine: the thread-safe front of EngineCore. Any thread may AddRequest / Abort / Stats; they
// validate, enqueue into an inbox and return. One engine thread drains the inbox between steps
// and owns all scheduling state; results flow back through each request's OutputStream.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "src/engine/engine_core.h"

namespace muse::engine {

class Engine {
 public:
  // Takes ownership of the runner and starts the engine thread.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(
      std::unique_ptr<runtime::ModelRunner> runner, const EngineOptions& options);
  // Aborts live requests (finish reason "abort") and joins the engine thread.
  ~Engine();

  // Validates and queues. Errors: InvalidArgument (fields, sizes), AlreadyExists (live id),
  // ResourceExhausted (waiting queue full), Unavailable (shutting down). The stream ends with a
  // message whose finished == true, whatever happens.
  absl::StatusOr<std::shared_ptr<OutputStream>> AddRequest(Request request);
  // Asynchronous: the request finishes with "abort" before the next step. NotFound if not live.
  absl::Status Abort(const std::string& request_id);
  // Snapshot published by the engine thread after every step: a stream can end a moment before
  // the step that ended it is counted here.
  EngineStats Stats() const;
  const models::ModelConfig& model_config() const { return runner_->config(); }
  int64_t max_model_len() const { return core_->max_model_len(); }

  void Shutdown();

 private:
  Engine(std::unique_ptr<runtime::ModelRunner> runner, std::unique_ptr<EngineCore> core,
         const EngineOptions& options);
  void Loop();

  std::unique_ptr<runtime::ModelRunner> runner_;
  std::unique_ptr<EngineCore> core_;  // engine thread only (ValidateRequest is const-safe)
  const EngineOptions options_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  absl::Status lost_;  // the runner's Health() once it failed: requests are refused with it
  struct Pending {
    Request request;
    std::shared_ptr<OutputStream> stream;
  };
  std::vector<Pending> inbox_;
  std::vector<std::string> aborts_;
  absl::flat_hash_map<std::string, std::shared_ptr<OutputStream>> live_;
  EngineStats stats_;
  int64_t rejected_ = 0;
  std::thread thread_;
};

}  // namespace muse::engine
