#include "benchmarks/bench/arrivals.h"

#include <cmath>

namespace muse::bench {

ArrivalProcess::ArrivalProcess(const ArrivalConfig& config)
    : config_(config),
      rng_(config.seed ^ 0x9e3779b97f4a7c15ULL),
      gap_(config.burstiness, std::isinf(config.rate) || config.rate <= 0
                                  ? 1.0
                                  : 1.0 / (config.rate * config.burstiness)) {}

double ArrivalProcess::Next() {
  if (first_ || std::isinf(config_.rate)) {
    first_ = false;
    return t_;
  }
  t_ += gap_(rng_);
  return t_;
}

std::vector<double> ArrivalTimes(const ArrivalConfig& config, size_t n) {
  ArrivalProcess p(config);
  std::vector<double> t(n);
  for (double& x : t) x = p.Next();
  return t;
}

}  // namespace muse::bench
