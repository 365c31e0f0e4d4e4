// The NCCL backend of collective::Communicator (issue 20): one GPU per rank. Plain header (no CUDA
// types): the stream is passed as an opaque cudaStream_t.
//
// Every buffer is DEVICE memory of this rank's GPU. Each call enqueues the collective on `stream`
// and waits for it, so the calls block like Gloo's; a call that does not finish within the timeout
// (a peer died or hangs: NCCL itself would wait forever) aborts the NCCL communicator and returns
// Unavailable, and the communicator stays broken. Bootstrap: rank 0 makes the NCCL unique id and
// sends it to the others over a CPU communicator (Gloo), as torch does with its store.
#pragma once

#include <memory>

#include "absl/time/time.h"
#include "src/collective/communicator.h"
#include "src/common/status.h"

namespace muse::runtime {

// `bootstrap` has this group's ranks and sizes (used only here); `device` is this rank's GPU
// ordinal; `stream` a cudaStream_t (nullptr = the legacy default stream).
absl::StatusOr<std::unique_ptr<collective::Communicator>> ConnectNccl(
    collective::Communicator& bootstrap, int device, void* stream,
    absl::Duration timeout = absl::Seconds(30));

}  // namespace muse::runtime
