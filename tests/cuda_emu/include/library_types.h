// The emulator's <library_types.h>.
#pragma once

#include "muse_cuda_emu/types.h"
