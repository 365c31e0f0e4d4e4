// Client-overhead calibration: run the load generator against an in-process PacerServer and
// compare every received chunk with the moment the server started writing it. The gap covers
// server write + loopback + client callback, so it is an upper bound on the client's own cost.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "benchmarks/bench/metrics.h"
#include "benchmarks/bench/pacer_server.h"

namespace muse::bench {

struct SelfTestConfig {
  int64_t streams = 2000;  // all sent at t = 0
  int connections = 4;
  PacerConfig pacer;
};

struct SelfTestReport {
  SelfTestConfig config;
  int64_t completed = 0, failed = 0, chunks = 0;
  double duration_s = 0;
  Distribution delivery_ms;         // client receive - server write start, per chunk
  Distribution ttft_excess_ms;      // client TTFT - first_delay
  Distribution itl_ms;              // client ITL (pacer interval is the ideal)
  Distribution send_lag_ms;         // client send - scheduled (0) for rate = inf
  Distribution server_lateness_ms;  // pacer write start - its own schedule
  double process_cpu_s = 0;         // user + sys of this process (client and pacer) during the run
  double dispatch_wall_s = 0;       // first to last send
};

absl::StatusOr<SelfTestReport> RunSelfTest(const SelfTestConfig& config);
std::string FormatSelfTest(const SelfTestReport& r);

}  // namespace muse::bench
