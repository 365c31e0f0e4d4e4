// The emulator's <cublas_v2.h>: a reference GEMM in fp32 for the calls our runtime makes.
#pragma once

#include "muse_cuda_emu/cublas.h"
