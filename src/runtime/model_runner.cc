#include "src/runtime/model_runner.h"

#include "absl/strings/str_cat.h"
#include "src/runtime/cpu_model_runner.h"
#ifdef MUSE_WITH_CUDA_RUNNER
#include "src/runtime/cuda/cuda_model_runner.h"
#endif

namespace muse::runtime {

absl::StatusOr<std::unique_ptr<ModelRunner>> CreateModelRunner(const RunnerOptions& options) {
  if (options.device.rfind("cuda", 0) == 0) {
#ifdef MUSE_WITH_CUDA_RUNNER
    ASSIGN_OR_RETURN(auto r, CudaModelRunner::Create(options));
    return std::unique_ptr<ModelRunner>(std::move(r));
#else
    return absl::InvalidArgumentError(absl::StrCat(
        "device: '", options.device, "' needs a build with the CUDA toolkit (nvcc not found)"));
#endif
  }
  ASSIGN_OR_RETURN(auto r, CpuModelRunner::Create(options));
  return std::unique_ptr<ModelRunner>(std::move(r));
}

}  // namespace muse::runtime
