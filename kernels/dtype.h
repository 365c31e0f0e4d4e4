// Element types of checkpoint tensors (safetensors) and of the kernels, one enum for both. The
// kernels are instantiated for the three floating-point types. Plain C++ so engine code can include
// it.
#pragma once

#include <cstddef>

namespace muse::kernels {

enum class DType : int {
  kFloat32 = 0,
  kFloat16 = 1,
  kBFloat16 = 2,
  kInt64 = 3,
  kInt32 = 4,
  kUInt8 = 5
};

inline constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::kFloat32:
    case DType::kInt32:
      return 4;
    case DType::kFloat16:
    case DType::kBFloat16:
      return 2;
    case DType::kInt64:
      return 8;
    case DType::kUInt8:
      return 1;
  }
  return 0;
}

}  // namespace muse::kernels
