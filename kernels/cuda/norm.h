// RMSNorm and fused residual-add + RMSNorm (fp32 accumulation, any hidden size).
#pragma once

#include <cuda_runtime.h>

#include "kernels/dtype.h"

namespace muse::kernels {

struct RmsNormParams {
  void* out;          // out: [num_tokens, hidden] (may alias input)
  const void* input;  // input: [num_tokens, hidden]
  void* residual;     // residual: [num_tokens, hidden]; nullptr = plain RMSNorm. Fused mode:
                      //   residual <- input + residual (rounded to dtype), out <- rmsnorm(residual)
  const void* weight;  // weight: [hidden]
  int num_tokens = 0;
  int hidden = 0;
  float eps = 1e-6f;
  DType dtype = DType::kBFloat16;
};

// Plain: out = input * rsqrt(mean(input^2) + eps) * weight.
cudaError_t launch_rms_norm(const RmsNormParams& p, cudaStream_t stream);

}  // namespace muse::kernels
