#include "benchmarks/bench/arrivals.h"

#include <gtest/gtest.h>

#include <cmath>

namespace muse::bench {
namespace {

struct GapStats {
  double mean = 0, cv = 0;
};

GapStats Gaps(const std::vector<double>& t) {
  std::vector<double> g;
  for (size_t i = 1; i < t.size(); ++i) g.push_back(t[i] - t[i - 1]);
  double m = 0;
  for (double x : g) m += x;
  m /= g.size();
  double v = 0;
  for (double x : g) v += (x - m) * (x - m);
  v /= g.size();
  return {m, std::sqrt(v) / m};
}

TEST(Arrivals, InfiniteRateSendsAllAtZero) {
  for (double t : ArrivalTimes({}, 100)) EXPECT_EQ(t, 0.0);
}

TEST(Arrivals, PoissonMeanRateAndUnitCv) {
  auto t = ArrivalTimes({.rate = 10, .burstiness = 1, .seed = 7}, 40001);
  EXPECT_EQ(t[0], 0.0);
  const GapStats s = Gaps(t);
  // 40000 exponential gaps: the mean's relative standard error is 0.5 %.
  EXPECT_NEAR(s.mean, 0.1, 0.1 * 0.02);
  EXPECT_NEAR(s.cv, 1.0, 0.03);
  EXPECT_NEAR(40000 / t.back(), 10.0, 0.2);
}

TEST(Arrivals, GammaBurstinessSetsCv) {
  for (double b : {0.25, 0.5, 4.0}) {
    auto t = ArrivalTimes({.rate = 5, .burstiness = b, .seed = 3}, 40001);
    const GapStats s = Gaps(t);
    EXPECT_NEAR(s.mean, 0.2, 0.2 * 0.04) << "burstiness " << b;
    EXPECT_NEAR(s.cv, 1.0 / std::sqrt(b), 0.06 / std::sqrt(b)) << "burstiness " << b;
  }
}

TEST(Arrivals, SeedDeterminism) {
  auto a = ArrivalTimes({.rate = 3, .burstiness = 1, .seed = 42}, 1000);
  auto b = ArrivalTimes({.rate = 3, .burstiness = 1, .seed = 42}, 1000);
  auto c = ArrivalTimes({.rate = 3, .burstiness = 1, .seed = 43}, 1000);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  for (size_t i = 1; i < a.size(); ++i) EXPECT_GE(a[i], a[i - 1]);
}

}  // namespace
}  // namespace muse::bench
