// float32 <-> bfloat16 / float16 bit conversions. Narrowing rounds to nearest, ties to even,
// like torch's .to(torch.bfloat16) / .to(torch.float16). Plain C++, no libtorch.
#pragma once

#include <cstdint>

namespace muse::models {

uint16_t FloatToBf16(float f);
float Bf16ToFloat(uint16_t h);
uint16_t FloatToF16(float f);
float F16ToFloat(uint16_t h);

}  // namespace muse::models
