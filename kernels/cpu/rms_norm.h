// RMSNorm of fp32 rows on raw host pointers (AVX2 + FMA; check PackedGemmSupported() first).
// Rows are split over the pool when there are many. CUDA twin: kernels/cuda/rms_norm.cu.
#pragma once

#include <cstdint>

#include "kernels/cpu/thread_pool.h"

namespace muse::kernels::cpu {

// y[t] = w * (x[t] / sqrt(mean(x[t]^2) + eps)) for t in [0, rows); x, y: [rows, n] with row
// strides ldx, ldy (y may alias x).
void RmsNorm(const float* x, int64_t ldx, const float* w, int64_t rows, int64_t n, float eps,
             float* y, int64_t ldy, ThreadPool& pool);

}  // namespace muse::kernels::cpu
