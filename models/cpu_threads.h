// CPU thread policy for ATen + OpenBLAS.
//
// Debian's libtorch runs GEMMs in OpenBLAS (its own pthread pool) and elementwise ops in OpenMP.
// With both pools at N threads, OpenMP's spinning workers and OpenBLAS's threads fight for the
// same cores: on the 2-core CI machine batch-8 decode ran 3x slower than with one pool. Decode
// and encode time is GEMM/GEMV, so when OpenBLAS is present it gets the cores and ATen's
// intra-op pool gets one thread; otherwise ATen gets them.
#pragma once

namespace muse::models {

struct CpuThreads {
  int blas = 0;  // threads given to OpenBLAS (0 = no OpenBLAS found)
  int aten = 0;  // ATen intra-op threads
};

// `threads` <= 0 means every hardware thread. Process-wide; idempotent.
CpuThreads ConfigureCpuThreads(int threads);

}  // namespace muse::models
