// Request arrival times, as vLLM's get_request: the first request at t = 0, then gaps drawn from
// Gamma(shape = burstiness, scale = 1 / (rate * burstiness)) so the mean rate is `rate` and the
// gaps' coefficient of variation is 1 / sqrt(burstiness). burstiness = 1 is a Poisson process;
// rate = inf sends everything at t = 0. Deterministic for a seed (libstdc++ distributions).
#pragma once

#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace muse::bench {

struct ArrivalConfig {
  double rate = std::numeric_limits<double>::infinity();  // requests per second
  double burstiness = 1.0;
  uint64_t seed = 0;
};

class ArrivalProcess {
 public:
  explicit ArrivalProcess(const ArrivalConfig& config);
  // Seconds from the benchmark start of the next request.
  double Next();

 private:
  ArrivalConfig config_;
  std::mt19937_64 rng_;
  std::gamma_distribution<double> gap_;
  double t_ = 0;
  bool first_ = true;
};

std::vector<double> ArrivalTimes(const ArrivalConfig& config, size_t n);

}  // namespace muse::bench
