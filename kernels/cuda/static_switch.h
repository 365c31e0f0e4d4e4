// Runtime value -> constexpr dispatch (after flash-attention's static_switch.h).
// Usage: return MUSE_DTYPE_SWITCH(p.dtype, T, [&] { return launch_impl<T>(p, stream); });
// Only the listed dtypes / head dims are instantiated; anything else returns cudaErrorNotSupported.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/dtype.h"

#define MUSE_DTYPE_SWITCH(DT, T, ...)           \
  [&]() -> cudaError_t {                        \
    switch (DT) {                               \
      case ::muse::kernels::DType::kFloat32: {  \
        using T = float;                        \
        return __VA_ARGS__();                   \
      }                                         \
      case ::muse::kernels::DType::kFloat16: {  \
        using T = __half;                       \
        return __VA_ARGS__();                   \
      }                                         \
      case ::muse::kernels::DType::kBFloat16: { \
        using T = __nv_bfloat16;                \
        return __VA_ARGS__();                   \
      }                                         \
      default: /* integer types */              \
        break;                                  \
    }                                           \
    return cudaErrorNotSupported;               \
  }()

// 16-bit types only (tensor-core kernels).
#define MUSE_HALF_DTYPE_SWITCH(DT, T, ...)      \
  [&]() -> cudaError_t {                        \
    switch (DT) {                               \
      case ::muse::kernels::DType::kFloat16: {  \
        using T = __half;                       \
        return __VA_ARGS__();                   \
      }                                         \
      case ::muse::kernels::DType::kBFloat16: { \
        using T = __nv_bfloat16;                \
        return __VA_ARGS__();                   \
      }                                         \
      default:                                  \
        return cudaErrorNotSupported;           \
    }                                           \
  }()

// Attention head dims: 16, 32 (tiny Llamas, SmolLM-class), 64, 80, 96, 128. The prefill kernel
// needs D % 16 == 0 (mma k-steps), the decode kernel D % 8 == 0 (8-element lane chunks).
#define MUSE_HEADDIM_SWITCH(HD, KD, ...) \
  [&]() -> cudaError_t {                 \
    switch (HD) {                        \
      case 16: {                         \
        constexpr int KD = 16;           \
        return __VA_ARGS__();            \
      }                                  \
      case 32: {                         \
        constexpr int KD = 32;           \
        return __VA_ARGS__();            \
      }                                  \
      case 64: {                         \
        constexpr int KD = 64;           \
        return __VA_ARGS__();            \
      }                                  \
      case 80: {                         \
        constexpr int KD = 80;           \
        return __VA_ARGS__();            \
      }                                  \
      case 96: {                         \
        constexpr int KD = 96;           \
        return __VA_ARGS__();            \
      }                                  \
      case 128: {                        \
        constexpr int KD = 128;          \
        return __VA_ARGS__();            \
      }                                  \
    }                                    \
    return cudaErrorNotSupported;        \
  }()
