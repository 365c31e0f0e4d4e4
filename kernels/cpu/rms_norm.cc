#include "kernels/cpu/rms_norm.h"

#include <cmath>

#include "kernels/cpu/vec_math.h"

namespace muse::kernels::cpu {
namespace {

MUSE_AVX2 void RmsNormRow(const float* x, const float* w, int64_t n, float eps, float* y) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    acc = _mm256_fmadd_ps(v, v, acc);
  }
  float ss = HorizontalSum(acc);
  for (; i < n; ++i) ss += x[i] * x[i];
  const float r = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
  const __m256 rv = _mm256_set1_ps(r);
  i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(
        y + i, _mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_mul_ps(_mm256_loadu_ps(x + i), rv)));
  }
  for (; i < n; ++i) y[i] = w[i] * (x[i] * r);
}

}  // namespace

void RmsNorm(const float* x, int64_t ldx, const float* w, int64_t rows, int64_t n, float eps,
             float* y, int64_t ldy, ThreadPool& pool) {
  pool.ParallelRows(rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) RmsNormRow(x + r * ldx, w, n, eps, y + r * ldy);
  });
}

}  // namespace muse::kernels::cpu
