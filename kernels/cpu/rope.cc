#include "kernels/cpu/rope.h"

#include <cmath>

#include "kernels/cpu/vec_math.h"

namespace muse::kernels::cpu {
namespace {

MUSE_AVX2 void RopeRow(float* x, int64_t heads, int64_t d, const float* cos, const float* sin) {
  const int64_t half = d / 2;
  for (int64_t h = 0; h < heads; ++h) {
    float* x1 = x + h * d;
    float* x2 = x1 + half;
    int64_t i = 0;
    for (; i + 8 <= half; i += 8) {
      const __m256 a = _mm256_loadu_ps(x1 + i), b = _mm256_loadu_ps(x2 + i);
      const __m256 c = _mm256_loadu_ps(cos + i), s = _mm256_loadu_ps(sin + i);
      _mm256_storeu_ps(x1 + i, _mm256_fmsub_ps(a, c, _mm256_mul_ps(b, s)));
      _mm256_storeu_ps(x2 + i, _mm256_fmadd_ps(b, c, _mm256_mul_ps(a, s)));
    }
    for (; i < half; ++i) {
      const float a = x1[i], b = x2[i];
      x1[i] = a * cos[i] - b * sin[i];
      x2[i] = b * cos[i] + a * sin[i];
    }
  }
}

}  // namespace

void ApplyRope(float* x, int64_t ldx, int64_t rows, int64_t heads, int64_t d, const float* cos,
               const float* sin, ThreadPool& pool) {
  pool.ParallelRows(rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      RopeRow(x + r * ldx, heads, d, cos + r * (d / 2), sin + r * (d / 2));
    }
  });
}

}  // namespace muse::kernels::cpu
