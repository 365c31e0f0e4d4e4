// The load generator: one dispatcher thread starts requests on the arrival schedule, optionally
// capped at max_concurrency in flight (closed loop when rate = inf), through a Backend
// (backend.h): gRPC callback-API streams (one ClientReadReactor per request, timestamps in
// OnReadDone on gRPC's callback threads) or the OpenAI HTTP API (openai_backend.cc: Beast
// coroutines on a few io threads). No per-request thread exists.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "benchmarks/bench/arrivals.h"
#include "benchmarks/bench/backend.h"
#include "benchmarks/bench/request_record.h"
#include "benchmarks/bench/workload.h"

namespace muse::bench {

struct RunConfig {
  std::string target = "127.0.0.1:50051";  // gRPC: requests, and ModelInfo / Tokenize always
  BackendKind backend = BackendKind::kGrpc;
  std::string http_host = "127.0.0.1";  // the OpenAI backends' server
  int http_port = 0;
  std::string api_key;          // sent as "authorization: Bearer <key>"
  std::string model;            // GenerateRequest.model (empty = served model)
  int connections = 4;          // gRPC: HTTP/2 connections, requests round-robin; HTTP: io threads
  int64_t max_concurrency = 0;  // 0 = unlimited
  ArrivalConfig arrival;
  int64_t num_prompts = 1000;    // used when duration_s == 0
  double duration_s = 0;         // > 0: send until this many seconds, then drain
  double request_timeout_s = 0;  // per-request deadline, 0 = none
  float temperature = 0.0f;      // greedy by default: cheapest sampling, reproducible
  std::string json_schema;       // non-empty: every request's structured-output schema (text)
  std::string request_id_prefix = "bench-";
  int64_t index_offset = 0;  // request i uses workload.Make(i + index_offset) (warm-up)
};

// Live counters, read by the progress bar.
struct RunProgress {
  std::atomic<int64_t> sent{0};
  std::atomic<int64_t> done{0};
  std::atomic<int64_t> failed{0};
  std::atomic<int64_t> output_tokens{0};
};

struct RunResult {
  std::vector<RequestRecord> records;           // by index
  double duration_s = 0;                        // first send to last stream closed
  std::chrono::steady_clock::time_point start;  // benchmark t = 0
  double start_unix_s = 0;
};

absl::StatusOr<RunResult> RunLoad(const RunConfig& config, const Workload& workload,
                                  RunProgress* progress);

// ModelInfo with retries until `wait_s` passes (a server that is still loading answers later).
absl::StatusOr<ModelFacts> FetchModelFacts(const RunConfig& config, double wait_s,
                                           std::string* model_id);
// Tokenize RPC, for ShareGPT prompt lengths.
TokenizeFn RemoteTokenizer(const RunConfig& config);

}  // namespace muse::bench
