// Shared helpers of the CPU kernel tests: random data, the poison value, the AVX2 guard.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cpu/packed_gemm.h"

namespace muse::kernels::cpu::test {

inline constexpr float kPoison = 12345.0f;

inline std::vector<float> Random(int64_t n, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

#define REQUIRE_AVX2() \
  if (!PackedGemmSupported()) GTEST_SKIP() << "CPU has no AVX2 + FMA"

}  // namespace muse::kernels::cpu::test
