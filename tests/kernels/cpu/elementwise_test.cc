// kernels/cpu/rms_norm and kernels/cpu/rope against double-precision loops.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels/cpu/rms_norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/thread_pool.h"
#include "tests/kernels/cpu/test_util.h"

namespace muse::kernels::cpu::test {
namespace {

TEST(CpuOps, RmsNormAndRopeMatchReference) {
  REQUIRE_AVX2();
  ThreadPool pool(3);
  for (int64_t rows : {1, 7, 83}) {
    for (int64_t n : {16, 769}) {
      std::mt19937 rng(static_cast<uint32_t>(rows * n));
      const auto x = Random(rows * n, rng), w = Random(n, rng, 0.5f, 1.5f);
      std::vector<float> y(rows * n, kPoison);
      RmsNorm(x.data(), n, w.data(), rows, n, 1e-5f, y.data(), n, pool);
      for (int64_t r = 0; r < rows; ++r) {
        double ss = 0;
        for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[r * n + i]) * x[r * n + i];
        const double inv = 1.0 / std::sqrt(ss / n + 1e-5);
        for (int64_t i = 0; i < n; ++i) {
          const double ref = w[i] * x[r * n + i] * inv;
          ASSERT_NEAR(y[r * n + i], ref, 2e-6 * (1 + std::fabs(ref)));
        }
      }
    }
    for (int64_t d : {16, 80, 128, 6}) {
      const int64_t heads = 5, ld = heads * d + 9;
      std::mt19937 rng(static_cast<uint32_t>(rows + d));
      const auto x0 = Random(rows * ld, rng);
      const auto ang = Random(rows * d / 2, rng, -30.0f, 30.0f);
      std::vector<float> cos(ang.size()), sin(ang.size());
      for (size_t i = 0; i < ang.size(); ++i) cos[i] = std::cos(ang[i]), sin[i] = std::sin(ang[i]);
      std::vector<float> x = x0;
      ApplyRope(x.data(), ld, rows, heads, d, cos.data(), sin.data(), pool);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t h = 0; h < heads; ++h) {
          for (int64_t i = 0; i < d / 2; ++i) {
            const double a = x0[r * ld + h * d + i], b = x0[r * ld + h * d + d / 2 + i];
            const double c = cos[r * d / 2 + i], s = sin[r * d / 2 + i];
            ASSERT_NEAR(x[r * ld + h * d + i], a * c - b * s, 1e-6);
            ASSERT_NEAR(x[r * ld + h * d + d / 2 + i], b * c + a * s, 1e-6);
          }
        }
        for (int64_t j = heads * d; j < ld; ++j) ASSERT_EQ(x[r * ld + j], x0[r * ld + j]);
      }
    }
  }
}

}  // namespace
}  // namespace muse::kernels::cpu::test
