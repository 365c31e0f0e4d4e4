// __half and __nv_bfloat16 as the emulator defines them: 16-bit storage with CUDA's conversion
// intrinsics (round to nearest even, as the hardware's _rn conversions; the bit conversions are
// kernels/float16.h). Written here rather than taken from the CUDA toolkit's headers because
// those pull in nvcc's host_defines and device-function declarations, which collide with the
// emulator's own language macros.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/float16.h"
#include "muse_cuda_emu/types.h"

namespace muse::cuda_emu {

inline uint16_t float_to_bf16_bits(float f) { return kernels::FloatToBf16(f); }
inline float bf16_bits_to_float(uint16_t h) { return kernels::Bf16ToFloat(h); }
inline uint16_t float_to_f16_bits(float f) { return kernels::FloatToF16(f); }
inline float f16_bits_to_float(uint16_t h) { return kernels::F16ToFloat(h); }

}  // namespace muse::cuda_emu

struct __half_raw {
  unsigned short x;
};
struct __nv_bfloat16_raw {
  unsigned short x;
};

// Like CUDA's types: trivially copyable 2-byte values, implicitly convertible from and to float.
struct __half {
  unsigned short __x;
  __half() = default;
  __half(__half_raw r) : __x(r.x) {}
  __half(float f) : __x(muse::cuda_emu::float_to_f16_bits(f)) {}
  __half(double f) : __half(static_cast<float>(f)) {}
  operator float() const { return muse::cuda_emu::f16_bits_to_float(__x); }
  operator __half_raw() const { return {__x}; }
};

struct __nv_bfloat16 {
  unsigned short __x;
  __nv_bfloat16() = default;
  __nv_bfloat16(__nv_bfloat16_raw r) : __x(r.x) {}
  __nv_bfloat16(float f) : __x(muse::cuda_emu::float_to_bf16_bits(f)) {}
  __nv_bfloat16(double f) : __nv_bfloat16(static_cast<float>(f)) {}
  operator float() const { return muse::cuda_emu::bf16_bits_to_float(__x); }
  operator __nv_bfloat16_raw() const { return {__x}; }
};

struct __half2 {
  __half x, y;
};
struct __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
using half = __half;
using half2 = __half2;

static_assert(sizeof(__half) == 2 && sizeof(__nv_bfloat16) == 2 && sizeof(__half2) == 4 &&
              sizeof(__nv_bfloat162) == 4);

inline __half __float2half_rn(float f) { return __half(f); }
inline __half __float2half(float f) { return __half(f); }
inline float __half2float(__half h) { return static_cast<float>(h); }
inline __half2 __floats2half2_rn(float lo, float hi) { return {__half(lo), __half(hi)}; }
inline __half2 __float2half2_rn(float f) { return {__half(f), __half(f)}; }
inline float2 __half22float2(__half2 h) { return {float(h.x), float(h.y)}; }
inline float __low2float(__half2 h) { return float(h.x); }
inline float __high2float(__half2 h) { return float(h.y); }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __ushort_as_half(unsigned short u) { return __half(__half_raw{u}); }

inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 h) { return static_cast<float>(h); }
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
  return {__nv_bfloat16(lo), __nv_bfloat16(hi)};
}
inline __nv_bfloat162 __float2bfloat162_rn(float f) { return {__nv_bfloat16(f), __nv_bfloat16(f)}; }
inline float2 __bfloat1622float2(__nv_bfloat162 h) { return {float(h.x), float(h.y)}; }
inline float __low2float(__nv_bfloat162 h) { return float(h.x); }
inline float __high2float(__nv_bfloat162 h) { return float(h.y); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) {
  return __nv_bfloat16(__nv_bfloat16_raw{u});
}
