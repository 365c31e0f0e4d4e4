// Shared helpers for the kernel tests: device check, host dtype rounding, device buffers,
// and the tolerance rule max|out - ref32| <= 2 * max|lowp - ref32| + atol.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/dtype.h"

namespace muse::kernels::test {

inline bool has_device() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

#define MUSE_REQUIRE_DEVICE()                                                   \
  do {                                                                          \
    if (!::muse::kernels::test::has_device()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

#define CUDA_OK(expr) ASSERT_EQ(cudaSuccess, (expr)) << cudaGetErrorString(cudaGetLastError())

inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);                     // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_to_f32(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);
  if (ax >= 0x47800000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65536: inf
  if (ax < 0x38800000u) {  // subnormal half (or zero): value / 2^-24, rounded to even
    float a;
    std::memcpy(&a, &ax, 4);
    const float scaled = a * 16777216.0f;  // exact
    const uint32_t r = static_cast<uint32_t>(std::nearbyint(scaled));
    return static_cast<uint16_t>(sign | r);
  }
  const uint32_t mant = ax & 0x7fffffu;
  uint32_t h = ((ax >> 23) - 112u) << 10 | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // may carry into the exponent: ok
  return static_cast<uint16_t>(sign | h);
}
inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  float f;
  if (e == 0) {
    f = std::ldexp(static_cast<float>(m), -24);
    return sign ? -f : f;
  }
  uint32_t u;
  if (e == 31)
    u = sign | 0x7f800000u | (m << 13);
  else
    u = sign | ((e + 112u) << 23) | (m << 13);
  std::memcpy(&f, &u, 4);
  return f;
}

inline float round_to(float x, DType t) {
  switch (t) {
    case DType::kFloat32:
      return x;
    case DType::kFloat16:
      return f16_to_f32(f32_to_f16(x));
    case DType::kBFloat16:
      return bf16_to_f32(f32_to_bf16(x));
    default:  // integer types are not kernel dtypes
      return x;
  }
}

inline const char* dtype_name(DType t) {
  return t == DType::kFloat32 ? "f32" : t == DType::kFloat16 ? "f16" : "bf16";
}

// Encode floats as the device representation of t.
inline std::vector<uint8_t> encode(const std::vector<float>& v, DType t) {
  std::vector<uint8_t> out(v.size() * dtype_size(t));
  for (size_t i = 0; i < v.size(); ++i) {
    if (t == DType::kFloat32) {
      std::memcpy(&out[i * 4], &v[i], 4);
    } else {
      const uint16_t h = t == DType::kFloat16 ? f32_to_f16(v[i]) : f32_to_bf16(v[i]);
      std::memcpy(&out[i * 2], &h, 2);
    }
  }
  return out;
}
inline std::vector<float> decode(const std::vector<uint8_t>& b, DType t) {
  const size_t n = b.size() / dtype_size(t);
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) {
    if (t == DType::kFloat32) {
      std::memcpy(&out[i], &b[i * 4], 4);
    } else {
      uint16_t h;
      std::memcpy(&h, &b[i * 2], 2);
      out[i] = t == DType::kFloat16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
  }
  return out;
}

// Random values already representable in t (so CPU references see exactly the device inputs).
inline std::vector<float> random_values(size_t n, DType t, std::mt19937& rng, float lo = -1.f,
                                        float hi = 1.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = round_to(d(rng), t);
  return v;
}

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes && cudaMalloc(&ptr_, bytes) != cudaSuccess) ptr_ = nullptr;
  }
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <typename U>
  static DeviceBuffer from(const std::vector<U>& v) {
    DeviceBuffer b(v.size() * sizeof(U));
    if (b.ptr_) cudaMemcpy(b.ptr_, v.data(), v.size() * sizeof(U), cudaMemcpyHostToDevice);
    return b;
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr; }
  template <typename U = void>
  U* get() const {
    return static_cast<U*>(ptr_);
  }
  size_t bytes() const { return bytes_; }
  void poison() {
    if (ptr_) cudaMemset(ptr_, 0xff, bytes_);  // NaN in every float type
  }
  template <typename U>
  std::vector<U> to_host() const {
    std::vector<U> v(bytes_ / sizeof(U));
    cudaMemcpy(v.data(), ptr_, v.size() * sizeof(U), cudaMemcpyDeviceToHost);
    return v;
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Tolerance rule from the dtype's own noise (flash-attention's tests).
inline void expect_within_noise(const std::vector<float>& out, const std::vector<float>& ref32,
                                const std::vector<float>& lowp, float atol,
                                const std::string& what) {
  ASSERT_EQ(out.size(), ref32.size());
  ASSERT_EQ(lowp.size(), ref32.size());
  double err = 0, noise = 0;
  size_t worst = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    const double e = std::fabs(static_cast<double>(out[i]) - ref32[i]);
    if (!(e <= err)) {  // NaN counts as worst
      err = std::isnan(e) ? INFINITY : e;
      worst = i;
    }
    noise = std::max(noise, std::fabs(static_cast<double>(lowp[i]) - ref32[i]));
  }
  EXPECT_LE(err, 2 * noise + atol) << what << ": worst index " << worst << " out " << out[worst]
                                   << " ref " << ref32[worst] << " lowp noise " << noise;
}

inline float default_atol(DType t) { return t == DType::kFloat32 ? 2e-5f : 1e-3f; }

}  // namespace muse::kernels::test
