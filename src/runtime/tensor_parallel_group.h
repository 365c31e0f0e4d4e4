// Tensor-parallel worker processes on one machine (issue 20), like vLLM's multiprocessing
// executor: rank 0 (this process: API, engine, scheduler) starts ranks 1..N-1 as `muse-tp-worker`
// processes, connects to them over Gloo (collective/gloo_communicator.h, a rendezvous directory
// made here) and watches them. Workers only run the runner: they execute the batches rank 0's
// runner broadcasts (ModelRunner::ServeTensorParallelWorker).
//
// Lifetime and failure:
//   - The workers are children of a thread that lives as long as the group, with
//     PR_SET_PDEATHSIG = SIGKILL, so they die with this process, however it ends: no orphans.
//   - A worker that exits or is killed is noticed within ~100 ms (waitpid); Health() then names
//     its rank, pid and how it ended. A collective in flight fails at once (its sockets close), or
//     after `timeout` if a worker hangs.
//   - The destructor (after rank 0's runner told the workers to stop) waits up to `timeout` for
//     them to exit, then kills what is left.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "src/collective/communicator.h"
#include "src/common/status.h"

namespace muse::runtime {

struct TensorParallelGroupOptions {
  int size = 2;                          // ranks, this process included
  std::string worker_binary;             // muse-tp-worker
  std::vector<std::string> worker_args;  // runner flags every worker gets (model, dtype, pool...)
  int timeout_seconds = 30;              // rendezvous, each collective, the workers' exit
};

class TensorParallelGroup {
 public:
  // Starts ranks 1..size-1 and connects to them as rank 0. Unavailable naming the rank when a
  // worker cannot be started or does not join (its exit status included when it died first).
  static absl::StatusOr<std::unique_ptr<TensorParallelGroup>> Start(
      const TensorParallelGroupOptions& options);
  ~TensorParallelGroup();

  collective::Communicator* comm() const { return comm_.get(); }
  // OK while every worker runs; otherwise Unavailable naming the first one that ended.
  absl::Status Health() const;
  std::vector<pid_t> worker_pids() const { return pids_; }

 private:
  TensorParallelGroup() = default;
  void Watch();

  TensorParallelGroupOptions options_;
  std::string store_dir_;
  std::vector<pid_t> pids_;  // rank r at r - 1
  std::unique_ptr<collective::Communicator> comm_;
  std::thread watcher_;  // forks the workers (their parent-death signal is tied to it), reaps them
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool spawned_ = false, stopping_ = false;
  std::vector<bool> exited_;
  absl::Status health_;
  absl::Status spawn_error_;
};

}  // namespace muse::runtime
