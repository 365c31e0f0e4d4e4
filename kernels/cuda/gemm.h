// Dense GEMM of the CUDA backend: y = x W^T with cuBLAS (bf16/fp16 in, fp32 accumulate), in the
// same launcher shape as our kernels (raw pointers + a stream), so forwards call it like any op.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace muse::kernels {

struct GemmParams {
  void* y;        // y: [m, n] row-major, dtype (or fp32 when y_fp32)
  const void* x;  // x: [m, k] row-major, dtype
  const void* w;  // w: [n, k] row-major, dtype (a Linear layer's weight, HF layout)
  int64_t m = 0;
  int64_t n = 0;
  int64_t k = 0;
  bool y_fp32 = false;             // write fp32 (logits) instead of dtype
  DType dtype = DType::kBFloat16;  // bf16 or fp16
};

// y = x W^T on `stream` (the handle is bound to it first). m == 0 is a no-op. Row-major y is
// column-major y^T = W x^T, so this is one cublasGemmEx(T, N) with no copies. The handle's
// workspace must be set by the caller when the call is captured into a CUDA graph.
cublasStatus_t launch_gemm(const GemmParams& p, cublasHandle_t handle, cudaStream_t stream);

}  // namespace muse::kernels
