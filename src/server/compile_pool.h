// Where the gRPC face compiles structured-output constraints the grammar cache does not hold yet
// (a new JSON schema plus its token classes: ~0.1-1 s), so that no gRPC callback thread -- they
// serve every other stream too -- ever waits on a compile. A small fixed set of threads
// (`--structured-compile-threads`, `muse-compile`) over one FIFO queue; each job carries the rest
// of its request's admission (compile, then Launch or the image encoder). The HTTP face admits
// constrained requests on its own pool of the same kind (openai_server.cc, admit_pool).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"

namespace muse::server {

class CompilePool {
 public:
  // Runs exactly once: on a pool thread with OkStatus, or with Unavailable when the pool stops
  // before a thread took it (in Stop; or at once on the caller's thread, for a Submit after Stop).
  using Job = std::function<void(absl::Status)>;

  explicit CompilePool(int threads);
  ~CompilePool();  // Stop()
  CompilePool(const CompilePool&) = delete;
  CompilePool& operator=(const CompilePool&) = delete;

  void Submit(Job job);  // never waits
  // Fails the queued jobs with Unavailable, waits for the running ones, joins. Idempotent.
  void Stop();

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;  // guarded by mu_
  bool stop_ = false;      // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace muse::server
