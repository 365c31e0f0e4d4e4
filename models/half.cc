#include "models/half.h"

#include <cstdint>
#include <cstring>

#include "kernels/float16.h"

namespace muse::models {

uint16_t FloatToBf16(float f) { return kernels::FloatToBf16(f); }
float Bf16ToFloat(uint16_t h) { return kernels::Bf16ToFloat(h); }
uint16_t FloatToF16(float f) { return kernels::FloatToF16(f); }
float F16ToFloat(uint16_t h) { return kernels::F16ToFloat(h); }

std::vector<float> ToFloat32(const TensorView& t) {
  const int64_t n = t.numel();
  std::vector<float> out;
  const auto* bytes = static_cast<const unsigned char*>(t.data);
  switch (t.dtype) {
    case DType::kFloat32:
      out.resize(n);
      std::memcpy(out.data(), bytes, n * sizeof(float));
      break;
    case DType::kFloat16:
    case DType::kBFloat16: {
      out.resize(n);
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, bytes + 2 * i, 2);
        out[i] = t.dtype == DType::kFloat16 ? F16ToFloat(h) : Bf16ToFloat(h);
      }
      break;
    }
    default:
      break;
  }
  return out;
}

}  // namespace muse::models
