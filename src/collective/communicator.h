// Collectives between the ranks of one tensor-parallel model (issue 20): the interface the sharded
// forwards call, with a Gloo backend (CPU processes over TCP, gloo_communicator.h) and, on GPUs,
// an NCCL one. Plain C++ beside the stack: models/ may include it.
//
// Every call is collective: all ranks make the same calls in the same order with the same sizes.
// A call blocks until every rank has contributed or the communicator's timeout passes. A failure
// (a peer died, hung past the timeout, or sizes disagree) is Unavailable naming the operation, and
// the communicator is broken from then on: every later call fails at once with the first error, as
// the ranks can no longer be assumed to be in step.
#pragma once

#include <cstdint>
#include <string>

#include "src/common/status.h"

namespace muse::collective {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // data[i] = the sum over ranks of their data[i], on every rank, in place. Every rank ends with
  // the same bits (each element is reduced once and the result distributed), so replicated state
  // computed from it stays identical across ranks.
  virtual absl::Status AllReduceSum(float* data, int64_t count) = 0;
  // out[r * count + i] = rank r's in[i], on every rank; `out` holds size() * count floats and may
  // not overlap `in`.
  virtual absl::Status AllGather(const float* in, int64_t count, float* out) = 0;
  // `bytes` bytes of `data` from rank `root` to every other rank's `data`.
  virtual absl::Status Broadcast(void* data, int64_t bytes, int root) = 0;
  virtual absl::Status Barrier() = 0;

  // A message whose size only `root` knows (e.g. one engine step's batch): the size, then the
  // bytes. On the other ranks `*message` is replaced.
  absl::Status BroadcastMessage(std::string* message, int root);
};

}  // namespace muse::collective
