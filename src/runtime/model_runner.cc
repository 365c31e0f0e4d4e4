#include "src/runtime/model_runner.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "src/runtime/cpu_model_runner.h"
#include "src/runtime/tensor_parallel_group.h"
#ifdef MUSE_WITH_CUDA_RUNNER
#include "src/runtime/cuda/cuda_model_runner.h"
#endif

namespace muse::runtime {
namespace {

// Rank 0 of a group of processes: the group's workers live as long as this runner.
class TensorParallelRunner final : public ModelRunner {
 public:
  TensorParallelRunner(std::unique_ptr<TensorParallelGroup> group,
                       std::unique_ptr<ModelRunner> rank0)
      : group_(std::move(group)), rank0_(std::move(rank0)) {}
  ~TensorParallelRunner() override {
    rank0_.reset();  // tells the workers to stop
    group_.reset();  // waits for them (kills what does not exit in time)
  }
  const models::ModelConfig& config() const override { return rank0_->config(); }
  int64_t num_kv_blocks() const override { return rank0_->num_kv_blocks(); }
  int64_t kv_block_bytes() const override { return rank0_->kv_block_bytes(); }

  absl::Status Forward(const models::Batch& batch, models::Logits* out) override {
    RETURN_IF_ERROR(Health());
    absl::Status st = rank0_->Forward(batch, out);
    if (st.code() == absl::StatusCode::kUnavailable) {
      // A failed collective leaves the ranks out of step for good. The group's own account (which
      // worker died, and how) says more; its watcher reaps a dead worker within ~100 ms of the
      // sockets closing, so wait that long for it (a hung worker has none: the timeout spoke).
      absl::Status group = group_->Health();
      for (int i = 0; i < 50 && group.ok(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        group = group_->Health();
      }
      std::lock_guard lock(mu_);
      if (lost_.ok()) lost_ = group.ok() ? st : group;
      return lost_;
    }
    return st;
  }

  absl::Status Health() const override {
    {
      std::lock_guard lock(mu_);
      if (!lost_.ok()) return lost_;
    }
    return group_->Health();
  }

 private:
  std::unique_ptr<TensorParallelGroup> group_;
  std::unique_ptr<ModelRunner> rank0_;
  mutable std::mutex mu_;
  absl::Status lost_;
};

std::string DefaultWorkerBinary() {
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "muse-tp-worker";
  return (self.parent_path() / "muse-tp-worker").string();
}

absl::StatusOr<std::unique_ptr<ModelRunner>> CreateTensorParallelRunner(RunnerOptions options) {
  if (options.device != "cpu") {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor_parallel_size: worker processes run on the CPU only for now, got device '",
        options.device, "'"));
  }
  if (options.tensor_parallel_timeout_seconds < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor_parallel_timeout_seconds must be >= 1, got ",
                     options.tensor_parallel_timeout_seconds));
  }
  TensorParallelGroupOptions g;
  g.size = options.tensor_parallel_size;
  g.worker_binary = options.tensor_parallel_worker.empty() ? DefaultWorkerBinary()
                                                           : options.tensor_parallel_worker;
  g.timeout_seconds = options.tensor_parallel_timeout_seconds;
  g.worker_args = {absl::StrCat("--model=", options.model_dir),
                   absl::StrCat("--dtype=", options.dtype),
                   absl::StrCat("--threads=", options.num_threads),
                   absl::StrCat("--num-kv-blocks=", options.num_kv_blocks),
                   absl::StrCat("--kv-cache-bytes=", options.kv_cache_bytes),
                   absl::StrCat("--cpu-kernels=", options.cpu_kernels ? "true" : "false")};
  ASSIGN_OR_RETURN(std::unique_ptr<TensorParallelGroup> group, TensorParallelGroup::Start(g));
  options.tensor_parallel = group->comm();
  options.tensor_parallel_size = 1;
  auto rank0 = CpuModelRunner::Create(options);
  if (!rank0.ok()) {
    return absl::Status(rank0.status().code(),
                        absl::StrCat("tensor-parallel rank 0: ", rank0.status().message()));
  }
  return std::unique_ptr<ModelRunner>(
      new TensorParallelRunner(std::move(group), std::move(*rank0)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ModelRunner>> CreateModelRunner(const RunnerOptions& options) {
  if (options.tensor_parallel_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor_parallel_size must be >= 1, got ", options.tensor_parallel_size));
  }
  if (options.tensor_parallel_size > 1) return CreateTensorParallelRunner(options);
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
