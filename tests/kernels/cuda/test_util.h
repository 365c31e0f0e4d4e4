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
#include "kernels/float16.h"

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

inline uint16_t f32_to_bf16(float f) { return FloatToBf16(f); }
inline float bf16_to_f32(uint16_t h) { return Bf16ToFloat(h); }
inline uint16_t f32_to_f16(float f) { return FloatToF16(f); }
inline float f16_to_f32(uint16_t h) { return F16ToFloat(h); }

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
