// SiLU-and-mul: out = silu(gate) * up, input = [gate | up].
#pragma once

#include <cuda_runtime.h>

#include "kernels/dtype.h"

namespace muse::kernels {

struct SiluAndMulParams {
  void* out;          // out: [num_tokens, inter]
  const void* input;  // input: [num_tokens, 2 * inter], gate = first half, up = second half
  int num_tokens = 0;
  int inter = 0;
  DType dtype = DType::kBFloat16;
};

cudaError_t launch_silu_and_mul(const SiluAndMulParams& p, cudaStream_t stream);

}  // namespace muse::kernels
