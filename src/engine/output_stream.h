// Per-request result queue: the engine thread pushes, any thread consumes. The engine never calls
// into the server; the optional notify hook lets an async server wake up. The hook runs on the
// engine thread after each push (its time counts in the step), so it must only signal: no RPC or
// serialisation work, no blocking. muse-server's hook raises a PumpPool signal
// (src/server/pump_pool.h) and the writes happen on other threads.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "src/engine/request.h"

namespace muse::engine {

class OutputStream {
 public:
  explicit OutputStream(std::string request_id) : request_id_(std::move(request_id)) {}

  const std::string& request_id() const { return request_id_; }

  // Blocks until a message is available; nullopt once the final message has been consumed.
  std::optional<RequestOutput> Next();
  // As Next, but gives up after `timeout` (nullopt; check finished()).
  std::optional<RequestOutput> Next(absl::Duration timeout);
  // Never blocks.
  std::optional<RequestOutput> TryNext();
  // The final message has been pushed (it may not be consumed yet).
  bool finished() const;
  // Installs the wake-up hook; called at once (on the caller's thread) when messages are already
  // queued.
  void SetNotify(std::function<void()> notify);

  // Producer side (engine thread). Messages after the final one are dropped.
  void Push(RequestOutput output);

 private:
  std::optional<RequestOutput> PopLocked();

  const std::string request_id_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<RequestOutput> queue_;
  bool closed_ = false;  // final message pushed
  std::function<void()> notify_;
};

}  // namespace muse::engine
