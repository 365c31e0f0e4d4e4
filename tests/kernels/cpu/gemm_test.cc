// kernels/cpu/packed_gemm against double-precision loops: odd sizes, random data, poisoned
// outputs, 1 and 3 threads.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels/cpu/packed_gemm.h"
#include "kernels/cpu/thread_pool.h"
#include "tests/kernels/cpu/test_util.h"

namespace muse::kernels::cpu::test {
namespace {

struct GemmCase {
  int64_t m, n, k;
};

class PackedGemmTest : public ::testing::TestWithParam<GemmCase> {};

TEST_P(PackedGemmTest, MatchesDoubleReference) {
  REQUIRE_AVX2();
  const auto [m, n, k] = GetParam();
  std::mt19937 rng(static_cast<uint32_t>(m * 1000003 + n * 1009 + k));
  const auto w = Random(n * k, rng), bias = Random(n, rng);
  const int64_t ldx = k + 3, ldy = n + 5;  // strided rows
  const auto x = Random(m * ldx, rng);
  const auto y0 = Random(m * ldy, rng);
  const PackedWeight pw = PackedWeight::Pack(w.data(), n, k);
  for (int threads : {1, 3}) {
    ThreadPool pool(threads);
    for (int variant = 0; variant < 3; ++variant) {  // plain, + bias, accumulate
      std::vector<float> y = y0;
      if (variant < 2) {
        for (int64_t r = 0; r < m; ++r) std::fill_n(y.begin() + r * ldy, n, kPoison);
      }
      GemmArgs a{x.data(), m, ldx, y.data(), ldy};
      a.bias = variant == 1 ? bias.data() : nullptr;
      a.accumulate = variant == 2;
      PackedGemm(a, pw, pool);
      for (int64_t r = 0; r < m; ++r) {
        for (int64_t j = 0; j < n; ++j) {
          double ref = variant == 2 ? y0[r * ldy + j] : 0.0, mag = std::fabs(ref);
          if (variant == 1) ref += bias[j];
          for (int64_t i = 0; i < k; ++i) {
            ref += static_cast<double>(x[r * ldx + i]) * w[j * k + i];
            mag += std::fabs(static_cast<double>(x[r * ldx + i]) * w[j * k + i]);
          }
          ASSERT_NEAR(y[r * ldy + j], ref, 1e-6 * mag + 1e-6)
              << "m=" << m << " n=" << n << " k=" << k << " row " << r << " col " << j
              << " variant " << variant << " threads " << threads;
        }
        // Padding columns beyond n are untouched.
        for (int64_t j = n; j < ldy; ++j) ASSERT_EQ(y[r * ldy + j], y0[r * ldy + j]);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, PackedGemmTest,
                         ::testing::Values(GemmCase{1, 1, 1}, GemmCase{1, 769, 257},
                                           GemmCase{2, 17, 7}, GemmCase{5, 16, 256},
                                           GemmCase{7, 15, 513}, GemmCase{13, 33, 769},
                                           GemmCase{32, 100, 300}, GemmCase{83, 47, 129},
                                           GemmCase{6, 64, 1}, GemmCase{200, 31, 65}));

TEST(PackedGemm, SwiGluMatchesReference) {
  REQUIRE_AVX2();
  for (auto [m, inter, k] : std::vector<GemmCase>{{1, 16, 33}, {7, 172, 64}, {33, 61, 257}}) {
    std::mt19937 rng(static_cast<uint32_t>(inter));
    const auto gate = Random(inter * k, rng), up = Random(inter * k, rng), x = Random(m * k, rng);
    const PackedWeight pw = PackSwiGlu(gate.data(), up.data(), inter, k);
    EXPECT_EQ(pw.swiglu_intermediate(), inter);
    ThreadPool pool(3);
    std::vector<float> y(m * inter, kPoison);
    PackedGemmSwiGlu({x.data(), m, k, y.data(), inter}, pw, pool);
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t j = 0; j < inter; ++j) {
        double g = 0, u = 0;
        for (int64_t i = 0; i < k; ++i) {
          g += static_cast<double>(x[r * k + i]) * gate[j * k + i];
          u += static_cast<double>(x[r * k + i]) * up[j * k + i];
        }
        const double ref = g / (1 + std::exp(-g)) * u;
        ASSERT_NEAR(y[r * inter + j], ref, 1e-5 * (1 + std::fabs(ref))) << r << " " << j;
      }
    }
  }
}

TEST(PackedGemm, CopyRowReturnsTheOriginalRow) {
  std::mt19937 rng(3);
  const int64_t n = 37, k = 19;
  const auto w = Random(n * k, rng);
  const PackedWeight pw = PackedWeight::Pack(w.data(), n, k);
  std::vector<float> row(k);
  for (int64_t r = 0; r < n; ++r) {
    pw.CopyRow(r, row.data());
    for (int64_t i = 0; i < k; ++i) ASSERT_EQ(row[i], w[r * k + i]);
  }
}

}  // namespace
}  // namespace muse::kernels::cpu::test
