// Device helpers shared by the kernels: dtype conversion, 8-element vector loads, reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace muse::kernels {

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// Eight consecutive elements as raw bits: one 128-bit word for 16-bit types, two for fp32.
template <typename T>
struct Chunk8 {
  static constexpr int kWords = sizeof(T) / 2;
  uint4 w[kWords];
};

// p must be 16-byte aligned.
template <typename T>
__device__ __forceinline__ Chunk8<T> load_chunk8(const T* p) {
  Chunk8<T> c;
  const uint4* src = reinterpret_cast<const uint4*>(p);
#pragma unroll
  for (int i = 0; i < Chunk8<T>::kWords; ++i) c.w[i] = src[i];
  return c;
}

template <typename T>
__device__ __forceinline__ Chunk8<T> zero_chunk8() {
  Chunk8<T> c;
#pragma unroll
  for (int i = 0; i < Chunk8<T>::kWords; ++i) c.w[i] = make_uint4(0, 0, 0, 0);
  return c;
}

template <typename T>
__device__ __forceinline__ void chunk8_to_float(const Chunk8<T>& c, float (&f)[8]) {
  const T* e = reinterpret_cast<const T*>(c.w);
#pragma unroll
  for (int i = 0; i < 8; ++i) f[i] = to_float(e[i]);
}

template <typename T>
__device__ __forceinline__ void store_float8(T* p, const float (&f)[8]) {
  Chunk8<T> c;
  T* e = reinterpret_cast<T*>(c.w);
#pragma unroll
  for (int i = 0; i < 8; ++i) e[i] = from_float<T>(f[i]);
  uint4* dst = reinterpret_cast<uint4*>(p);
#pragma unroll
  for (int i = 0; i < Chunk8<T>::kWords; ++i) dst[i] = c.w[i];
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Deterministic block-wide sum (fixed tree); every thread gets the result. scratch: >= 33 floats.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nwarps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float x = lane < nwarps ? scratch[lane] : 0.f;
    x = warp_sum(x);
    if (lane == 0) scratch[32] = x;
  }
  __syncthreads();
  return scratch[32];
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nwarps = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float x = lane < nwarps ? scratch[lane] : -INFINITY;
    x = warp_max(x);
    if (lane == 0) scratch[32] = x;
  }
  __syncthreads();
  return scratch[32];
}

inline bool is_aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace muse::kernels
