// Device helpers shared by the kernels: dtype conversion, 8-element vector loads, reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

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

// Raw-bit views of memory that holds T elements. Reading T storage through a uint4 / uint32_t
// lvalue is type punning (undefined under strict aliasing; g++ -O2 does miscompile it), and
// __may_alias__ exempts accesses through these types from type-based alias analysis (g++, clang and
// nvcc). Not memcpy: nvcc 13 lowers a memcpy to or from global / shared memory into byte loads and
// stores even with __builtin_assume_aligned, losing the 128-bit accesses; through these views nvcc
// emits the same single ld/st.v4.u32 (ld/st.u32) as before. Register-to-register bit copies use
// memcpy.
struct __attribute__((__may_alias__, __aligned__(16))) AliasedU128 {
  uint4 v;
};
struct __attribute__((__may_alias__, __aligned__(4))) AliasedU32 {
  uint32_t v;
};

// 128 bits at p (16-byte aligned).
__device__ __forceinline__ uint4 load16(const void* p) {
  return static_cast<const AliasedU128*>(p)->v;
}
__device__ __forceinline__ void store16(void* p, const uint4& v) {
  static_cast<AliasedU128*>(p)->v = v;
}
// 32 bits at p (4-byte aligned).
__device__ __forceinline__ uint32_t load32(const void* p) {
  return static_cast<const AliasedU32*>(p)->v;
}
__device__ __forceinline__ void store32(void* p, uint32_t v) { static_cast<AliasedU32*>(p)->v = v; }

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
#pragma unroll
  for (int i = 0; i < Chunk8<T>::kWords; ++i) c.w[i] = load16(p + 4 * i);
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
  T e[8];
  memcpy(e, c.w, sizeof(e));  // register-to-register on nvcc
#pragma unroll
  for (int i = 0; i < 8; ++i) f[i] = to_float(e[i]);
}

template <typename T>
__device__ __forceinline__ void store_float8(T* p, const float (&f)[8]) {
  T e[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) e[i] = from_float<T>(f[i]);
  Chunk8<T> c;
  memcpy(c.w, e, sizeof(e));
#pragma unroll
  for (int i = 0; i < Chunk8<T>::kWords; ++i) store16(p + 4 * i, c.w[i]);
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

// Pointer -> integer for the alignment test only; nothing is accessed through it.
inline bool is_aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace muse::kernels
