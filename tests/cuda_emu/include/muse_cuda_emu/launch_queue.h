// The seam between a kernel launch (device.h) and the runtime (runtime.cc): a launch is validated
// and packaged on the device side, then run in stream order or recorded into a graph.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "muse_cuda_emu/types.h"

namespace muse::cuda_emu {

struct KernelLaunch {
  std::string name;                      // the kernel expression as written at the launch site
  std::function<void()> run;             // executes the whole grid
  std::vector<unsigned char> arg_bytes;  // the arguments by value, scanned for device pointers
};

// Runs `launch` now, in the order of `stream` (every stream executes synchronously), or appends
// it to the graph `stream` is capturing. Launch errors go to the last-error state.
void submit_launch(cudaStream_t stream, KernelLaunch launch);

// cudaGetLastError / cudaPeekAtLastError state.
void set_last_error(cudaError_t e);

}  // namespace muse::cuda_emu
