// float32 <-> bfloat16 / float16 bit conversions, the one copy every layer uses (checkpoints,
// kernel tests, the CUDA emulator's __half / __nv_bfloat16). Narrowing rounds to nearest, ties to
// even, like torch's .to(torch.bfloat16) / .to(torch.float16) and CUDA's __float2half_rn /
// __float2bfloat16_rn; NaN stays NaN (quiet). Header-only plain C++ (no libtorch, no CUDA).
#pragma once

#include <cstdint>
#include <cstring>

namespace muse::kernels {

inline uint32_t BitsOf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float FloatOf(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline uint16_t FloatToBf16(float f) {
  uint32_t u = BitsOf(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    // NaN: keep the sign and top payload bits, force quiet so truncation cannot make it Inf.
    return static_cast<uint16_t>((u >> 16) | 0x0040u);
  }
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even; overflow carries into Inf
  return static_cast<uint16_t>(u >> 16);
}

inline float Bf16ToFloat(uint16_t h) { return FloatOf(static_cast<uint32_t>(h) << 16); }

inline uint16_t FloatToF16(float f) {
  const uint32_t u = BitsOf(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // Inf or NaN
    return sign | (abs > 0x7f800000u ? 0x7e00u : 0x7c00u);
  }
  const int32_t exp = static_cast<int32_t>(abs >> 23) - 127;
  if (exp > 15) return sign | 0x7c00u;            // too large even before rounding
  uint32_t mant = (abs & 0x7fffffu) | 0x800000u;  // 24 bits with the implicit one
  int shift;                                      // bits dropped from the 24-bit mantissa
  uint32_t biased;
  if (exp >= -14) {
    shift = 13;
    biased = static_cast<uint32_t>(exp + 15);
  } else {
    if (abs == 0) return sign;
    shift = 13 + (-14 - exp);     // subnormal: the implicit one moves into the fraction
    if (shift > 24) return sign;  // below half the smallest subnormal
    biased = 0;
  }
  uint32_t kept = mant >> shift;
  const uint32_t rest = mant & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (kept & 1u))) ++kept;
  // For normals `kept` still holds the implicit bit; adding the exponent field lets a mantissa
  // carry roll into the exponent (and into Inf at the top), which is exactly what RNE wants.
  uint32_t bits;
  if (biased == 0) {
    bits = kept;  // a carry to 0x400 is the smallest normal, also correct
  } else {
    bits = ((biased - 1) << 10) + kept;
  }
  if (bits >= 0x7c00u) bits = 0x7c00u;
  return static_cast<uint16_t>(sign | bits);
}

inline float F16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {
    // Subnormal: normalise the mantissa.
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400u) == 0);
    bits = sign | ((112u - static_cast<uint32_t>(e)) << 23) | ((mant & 0x3ffu) << 13);
  }
  return FloatOf(bits);
}

}  // namespace muse::kernels
