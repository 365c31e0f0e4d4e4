#include "models/cpu_threads.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <algorithm>
#include <thread>

namespace muse::models {

CpuThreads ConfigureCpuThreads(int threads) {
  const int n =
      threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // Looked up at run time: libtorch brings OpenBLAS in through libblas.so.3 on Debian, while a
  // CUDA/MKL libtorch has no such symbol.
  using SetThreads = void (*)(int);
  auto set_blas = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  CpuThreads out;
  if (set_blas != nullptr) {
    set_blas(n);
    at::set_num_threads(1);
    out.blas = n;
    out.aten = 1;
  } else {
    at::set_num_threads(n);
    out.aten = n;
  }
  return out;
}

}  // namespace muse::models
