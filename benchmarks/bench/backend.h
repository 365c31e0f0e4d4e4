// How the load runner sends one request: the transport behind the dispatcher (arrivals,
// concurrency slots, records) and the shared metrics / report code. gRPC (Generate, server
// streaming) and the OpenAI-compatible HTTP API (chat or completions, SSE) implement it.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "benchmarks/bench/request_record.h"
#include "benchmarks/bench/workload.h"

namespace muse::bench {

struct RunConfig;
struct RunProgress;

enum class BackendKind { kGrpc, kOpenAiChat, kOpenAiCompletions };
const char* BackendName(BackendKind kind);  // "grpc", "openai-chat", "openai-completions"
absl::StatusOr<BackendKind> ParseBackend(const std::string& name);

// One request in flight, as the dispatcher hands it to a backend.
struct CallSlot {
  std::chrono::steady_clock::time_point origin;  // benchmark t = 0
  RequestRecord* record = nullptr;               // start_s is set; the backend fills the rest
  RunProgress* progress = nullptr;               // may be null
  std::function<void(bool ok)> done;             // exactly once, after the last record write
  double Now() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - origin).count();
  }
};

class Backend {
 public:
  virtual ~Backend() = default;
  // Opens connections (or checks the server answers) before t = 0.
  virtual absl::Status Connect() = 0;
  // Makes `b` sendable before t = 0 (e.g. chat needs text); default: nothing to do.
  virtual absl::Status Prepare(BenchRequest* b) {
    (void)b;
    return absl::OkStatus();
  }
  // Sends request `index` without blocking; the record is written from the backend's threads.
  virtual void Start(BenchRequest b, int64_t index, CallSlot slot) = 0;
};

std::unique_ptr<Backend> MakeGrpcBackend(const RunConfig& config);
std::unique_ptr<Backend> MakeOpenAiBackend(const RunConfig& config, bool chat);

}  // namespace muse::bench
