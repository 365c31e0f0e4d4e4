#include "kernels/cpu/cpu_ops.h"

#include <cmath>

#include "kernels/cpu/vec_math.h"

namespace muse::kernels::cpu {
namespace {

// Below this many rows the ops run on the calling thread (waking the pool costs more).
constexpr int64_t kParallelRows = 64;

void ForRows(int64_t rows, ThreadPool& pool, const std::function<void(int64_t, int64_t)>& fn) {
  if (rows < kParallelRows) {
    fn(0, rows);
  } else {
    pool.ParallelFor(rows, fn);
  }
}

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
    _mm256_storeu_ps(y + i,
                     _mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_mul_ps(_mm256_loadu_ps(x + i), rv)));
  }
  for (; i < n; ++i) y[i] = w[i] * (x[i] * r);
}

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

void RmsNorm(const float* x, int64_t ldx, const float* w, int64_t rows, int64_t n, float eps,
             float* y, int64_t ldy, ThreadPool& pool) {
  ForRows(rows, pool, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) RmsNormRow(x + r * ldx, w, n, eps, y + r * ldy);
  });
}

void ApplyRope(float* x, int64_t ldx, int64_t rows, int64_t heads, int64_t d, const float* cos,
               const float* sin, ThreadPool& pool) {
  ForRows(rows, pool, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      RopeRow(x + r * ldx, heads, d, cos + r * (d / 2), sin + r * (d / 2));
    }
  });
}

}  // namespace muse::kernels::cpu
