// Backend-neutral model runner: owns the weights and the paged KV pool, executes Batches.
// No libtorch in this header: the engine and server include it.
#pragma once

#include <memory>
#include <string>

#include "models/batch.h"
#include "models/model_config.h"
#include "src/common/status.h"

namespace muse::collective {
class Communicator;
}  // namespace muse::collective

namespace muse::runtime {

struct RunnerOptions {
  std::string model_dir;
  std::string device = "cpu";     // "cpu" or "cuda[:N]"
  std::string dtype = "float32";  // compute + KV dtype: float32, bfloat16, float16
  int num_threads = 0;            // CPU intra-op threads; 0 = every hardware thread
  // fp32 on a CPU with AVX2 + FMA runs on muse's own kernels (kernels/cpu); false forces the
  // ATen path (the only one for bf16/fp16), e.g. to compare the two.
  bool cpu_kernels = true;
  int64_t num_kv_blocks = 0;             // > 0: exact pool size
  int64_t kv_cache_bytes = 256ll << 20;  // used when num_kv_blocks == 0
  // A runner that can sample on its device (CUDA) does so when the engine asks
  // (ForwardAndSample); false keeps every step's logits going to the host sampler.
  bool device_sampling = true;
  // Tensor parallelism (issue 20): this runner is one rank of comm->size() (> 1), holding its
  // shard of the weights and of the KV heads (models/tensor_parallel.h); every rank is created with
  // the same options. Rank 0's Forward broadcasts each batch; the other ranks run
  // ServeTensorParallelWorker. CPU: fp32 on the CPU kernels only. Outlives the runner.
  collective::Communicator* tensor_parallel = nullptr;
  // Or let CreateModelRunner start the group (tensor_parallel_group.h): > 1 starts ranks
  // 1..size-1 as `muse-tp-worker` processes (default: the one beside this executable) with these
  // same options, and returns rank 0's runner, which owns them. Collectives, the rendezvous and the
  // workers' exit time out after tensor_parallel_timeout_seconds.
  int tensor_parallel_size = 1;
  int tensor_parallel_timeout_seconds = 30;
  std::string tensor_parallel_worker;
};

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  virtual const models::ModelConfig& config() const = 0;
  virtual int64_t num_kv_blocks() const = 0;
  // Bytes one KV block takes over all layers (K and V).
  virtual int64_t kv_block_bytes() const = 0;
  // Executes one step: writes the new tokens' K/V into the pool, runs attention over the paged
  // context and returns fp32 logits for batch.logits_indices. Validates the batch (ids in vocab,
  // slots and block ids inside the pool, consistent offsets) and returns InvalidArgument otherwise.
  virtual absl::Status Forward(const models::Batch& batch, models::Logits* out) = 0;

  // True when ForwardAndSample is available (and RunnerOptions::device_sampling is on).
  virtual bool SamplesOnDevice() const { return false; }
  // Forward, then samples row r of the logits with sampling.rows[r] etc. on the device, exactly as
  // engine::Sampler::Sample would on the host (bit-identical ids and logprobs for the same
  // logits); only the sampled ids and logprobs come back. The batch and the sampling inputs are
  // validated (models::ValidateSamplingInputs) before any work: InvalidArgument naming the field.
  virtual absl::Status ForwardAndSample(const models::Batch& batch,
                                        const models::SamplingInputs& sampling,
                                        models::SampledTokens* out) {
    (void)batch;
    (void)sampling;
    (void)out;
    return absl::UnimplementedError("this runner does not sample on a device");
  }

  // OK while the runner can run steps. Unavailable once it never can again (a tensor-parallel
  // worker died or hung): the engine then fails every request and the server stops.
  virtual absl::Status Health() const { return absl::OkStatus(); }

  // Tensor-parallel ranks > 0: executes every batch rank 0's Forward broadcasts, until rank 0's
  // runner is destroyed (then OK) or a collective fails (Unavailable: rank 0 died or hung).
  virtual absl::Status ServeTensorParallelWorker() {
    return absl::UnimplementedError("this runner has no tensor-parallel worker");
  }
};

// Loads the checkpoint in options.model_dir and builds the runner for options.device.
absl::StatusOr<std::unique_ptr<ModelRunner>> CreateModelRunner(const RunnerOptions& options);

}  // namespace muse::runtime
