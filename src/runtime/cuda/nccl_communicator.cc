#include "src/runtime/cuda/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"

namespace muse::runtime {
namespace {

class NcclCommunicator final : public collective::Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, int rank, int size, cudaStream_t stream, absl::Duration timeout)
      : comm_(comm), rank_(rank), size_(size), stream_(stream), timeout_(timeout) {}
  ~NcclCommunicator() override {
    if (comm_ != nullptr) {
      // A broken communicator may have collectives stuck in flight: abort, do not wait.
      if (broken_.ok()) {
        ncclCommDestroy(comm_);
      } else {
        ncclCommAbort(comm_);
      }
    }
    if (scratch_ != nullptr) cudaFree(scratch_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  absl::Status AllReduceSum(float* data, int64_t count) override {
    return Run("all-reduce", ncclAllReduce(data, data, static_cast<size_t>(count), ncclFloat,
                                           ncclSum, comm_, stream_));
  }
  absl::Status AllGather(const float* in, int64_t count, float* out) override {
    return Run("all-gather",
               ncclAllGather(in, out, static_cast<size_t>(count), ncclFloat, comm_, stream_));
  }
  absl::Status Broadcast(void* data, int64_t bytes, int root) override {
    if (root < 0 || root >= size_) {
      return absl::InvalidArgumentError(
          absl::StrCat("broadcast root ", root, " is not a rank of ", size_));
    }
    return Run("broadcast", ncclBroadcast(data, data, static_cast<size_t>(bytes), ncclUint8, root,
                                          comm_, stream_));
  }
  absl::Status Barrier() override {
    // An all-reduce of one float in device scratch memory, as NCCL has no barrier.
    if (scratch_ == nullptr && cudaMalloc(&scratch_, sizeof(float)) != cudaSuccess) {
      return absl::ResourceExhaustedError("nccl barrier: cudaMalloc failed");
    }
    return AllReduceSum(scratch_, 1);
  }

 private:
  // Waits for the enqueued collective; aborts the communicator when it does not finish in time or
  // NCCL reports an asynchronous error.
  absl::Status Run(const char* op, ncclResult_t enqueued) {
    RETURN_IF_ERROR(broken_);
    if (enqueued != ncclSuccess) return Break(op, ncclGetErrorString(enqueued));
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout_));
    while (true) {
      const cudaError_t q = cudaStreamQuery(stream_);
      if (q == cudaSuccess) return absl::OkStatus();
      if (q != cudaErrorNotReady) return Break(op, cudaGetErrorString(q));
      ncclResult_t async = ncclSuccess;
      if (ncclCommGetAsyncError(comm_, &async) == ncclSuccess && async != ncclSuccess &&
          async != ncclInProgress) {
        return Break(op, ncclGetErrorString(async));
      }
      if (std::chrono::steady_clock::now() > deadline) {
        return Break(op, absl::StrCat("no progress in ", absl::FormatDuration(timeout_)));
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  absl::Status Break(const char* op, const std::string& why) {
    broken_ = absl::UnavailableError(absl::StrCat("tensor-parallel ", op, " failed on rank ", rank_,
                                                  " of ", size_, " (NCCL): ", why));
    return broken_;
  }

  ncclComm_t comm_;
  int rank_, size_;
  cudaStream_t stream_;
  absl::Duration timeout_;
  float* scratch_ = nullptr;
  absl::Status broken_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<collective::Communicator>> ConnectNccl(
    collective::Communicator& bootstrap, int device, void* stream, absl::Duration timeout) {
  if (cudaSetDevice(device) != cudaSuccess) {
    return absl::FailedPreconditionError(
        absl::StrCat("tensor parallel rank ", bootstrap.rank(), ": no CUDA device ", device));
  }
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (bootstrap.rank() == 0) {
    if (ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess) {
      return absl::UnavailableError(absl::StrCat("ncclGetUniqueId: ", ncclGetErrorString(r)));
    }
  }
  RETURN_IF_ERROR(bootstrap.Broadcast(&id, sizeof(id), 0));
  ncclComm_t comm = nullptr;
  if (ncclResult_t r = ncclCommInitRank(&comm, bootstrap.size(), id, bootstrap.rank());
      r != ncclSuccess) {
    return absl::UnavailableError(absl::StrCat("tensor parallel rank ", bootstrap.rank(),
                                               ": ncclCommInitRank: ", ncclGetErrorString(r)));
  }
  return std::unique_ptr<collective::Communicator>(new NcclCommunicator(
      comm, bootstrap.rank(), bootstrap.size(), static_cast<cudaStream_t>(stream), timeout));
}

}  // namespace muse::runtime
