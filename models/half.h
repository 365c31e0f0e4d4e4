// float32 <-> bfloat16 / float16 bit conversions. Narrowing rounds to nearest, ties to even,
// like torch's .to(torch.bfloat16) / .to(torch.float16). Plain C++, no libtorch.
#pragma once

#include <cstdint>
#include <vector>

#include "models/safetensors.h"

namespace muse::models {

uint16_t FloatToBf16(float f);
float Bf16ToFloat(uint16_t h);
uint16_t FloatToF16(float f);
float F16ToFloat(uint16_t h);

// The elements of a floating-point tensor (F32, F16 or BF16) widened to float32; reads through
// memcpy, so views that are not aligned to their dtype are fine. Empty for integer dtypes.
std::vector<float> ToFloat32(const TensorView& t);

}  // namespace muse::models
