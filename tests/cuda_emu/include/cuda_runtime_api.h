// The emulator's stand-in for <cuda_runtime.h>: value types, the runtime API (host side,
// executed in stream order on the CPU) and the device-side language (threads as fibers).
#pragma once

#include "muse_cuda_emu/device.h"
#include "muse_cuda_emu/half.h"
#include "muse_cuda_emu/runtime_api.h"
#include "muse_cuda_emu/types.h"
