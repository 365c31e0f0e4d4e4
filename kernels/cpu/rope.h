// Rotary embedding (HF rotate-half) of fp32 rows in place (AVX2 + FMA; check
// PackedGemmSupported() first). Tables: kernels/rope_freqs.h. CUDA twin: kernels/cuda/rope.cu.
#pragma once

#include <cstdint>

#include "kernels/cpu/thread_pool.h"

namespace muse::kernels::cpu {

// In-place rotate-half RoPE (HF convention) of `heads` heads of size d at the start of each row:
// x: [rows, heads * d] with row stride ldx; cos, sin: [rows, d / 2].
void ApplyRope(float* x, int64_t ldx, int64_t rows, int64_t heads, int64_t d, const float* cos,
               const float* sin, ThreadPool& pool);

}  // namespace muse::kernels::cpu
