// The emulator's <cuda_fp16.h>: __half and its conversions.
#pragma once

#include "muse_cuda_emu/half.h"
