// The emulator's <cuda_bf16.h>: __nv_bfloat16 and its conversions.
#pragma once

#include "muse_cuda_emu/half.h"
