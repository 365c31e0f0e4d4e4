// A real muse.v1.Inference gRPC server whose Generate streams a fixed schedule: message k
// (k = 0..messages-1, one token each) is written at stream start + first_delay + k * interval;
// the last one carries finished, usage and timings. It measures the load generator, not a model:
// the client-overhead self-test compares what the client records with these write times.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace muse::bench {

struct PacerConfig {
  int messages = 20;
  double first_delay_s = 0.050;
  double interval_s = 0.020;
  int64_t vocab_size = 32000;  // ModelInfo answer, so a random workload can be built
};

class PacerServer {
 public:
  using Clock = std::chrono::steady_clock;
  // Listens on 127.0.0.1:`port` (0 = any free port).
  static absl::StatusOr<std::unique_ptr<PacerServer>> Start(const PacerConfig& config,
                                                            int port = 0);
  ~PacerServer();
  int port() const;
  // Write-start times of each finished stream, by request_id.
  std::map<std::string, std::vector<Clock::time_point>> WriteTimes() const;
  // Stream start (request received) times, by request_id.
  std::map<std::string, Clock::time_point> StartTimes() const;

  struct Impl;

 private:
  explicit PacerServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace muse::bench
