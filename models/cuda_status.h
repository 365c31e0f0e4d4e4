// absl::Status from CUDA runtime and cuBLAS return codes, for the CUDA forward (models/llama) and
// the CUDA runner (src/runtime/cuda). Include only from code compiled where nvcc is found.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#define MUSE_CUDA_RETURN(expr)                                                       \
  do {                                                                               \
    const cudaError_t e_ = (expr);                                                   \
    if (e_ != cudaSuccess) {                                                         \
      return absl::InternalError(absl::StrCat(#expr, ": ", cudaGetErrorString(e_))); \
    }                                                                                \
  } while (0)

#define MUSE_CUBLAS_RETURN(expr)                                                                 \
  do {                                                                                           \
    const cublasStatus_t s_ = (expr);                                                            \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                           \
      return absl::InternalError(absl::StrCat(#expr, ": cuBLAS status ", static_cast<int>(s_))); \
    }                                                                                            \
  } while (0)
