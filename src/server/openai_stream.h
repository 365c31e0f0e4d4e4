// The HTTP face's per-generation I/O pieces (included by openai_server.cc only; Boost.Asio
// inside): the engine -> io handoff (Wakeup, the HTTP analogue of a PumpPool signal), one
// chat/completions request's engine streams and flags (Generation), the hang-up check behind the
// disconnect watcher, and writes bounded in time for clients that stop reading.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <cerrno>
#include <chrono>
#include <memory>
#include <vector>

#include "absl/time/time.h"
#include "src/server/output_accumulator.h"
#include "src/server/service_context.h"

namespace muse::server::openai_io {

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::awaitable;
inline constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

inline std::chrono::steady_clock::duration Chrono(absl::Duration d) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      absl::ToChronoNanoseconds(d));
}

// The engine -> io handoff of one generation. The OutputStream hook (engine thread) calls Raise:
// one atomic exchange and, the first time since the coroutine last took the flag, one post to
// the connection's strand that cancels the coroutine's wait. Holds no socket and owns no timer
// (only a weak reference), so whoever drops it last, nothing of the connection is destroyed.
class Wakeup {
 public:
  Wakeup(asio::any_io_executor strand, std::weak_ptr<asio::steady_timer> timer)
      : strand_(std::move(strand)), timer_(std::move(timer)) {}

  void Raise() {
    if (raised_.exchange(true, std::memory_order_acq_rel)) return;  // a wake is already pending
    asio::post(strand_, [t = timer_] {
      if (auto p = t.lock()) p->cancel();
    });
  }
  // On the strand.
  void RaiseHere() {
    raised_.store(true, std::memory_order_release);
    if (auto p = timer_.lock()) p->cancel();
  }
  bool Take() { return raised_.exchange(false, std::memory_order_acq_rel); }
  bool raised() const { return raised_.load(std::memory_order_acquire); }

 private:
  const asio::any_io_executor strand_;
  const std::weak_ptr<asio::steady_timer> timer_;
  std::atomic<bool> raised_{false};
};

// One chat/completions request: its engine requests (one per prompt), their accumulators, and
// the flags the disconnect watcher and the image encoder set. Touched only on the strand, except
// `cancelled` (read by the image-encoder thread).
struct Generation {
  explicit Generation(const asio::any_io_executor& strand)
      : timer(std::make_shared<asio::steady_timer>(strand)),
        wakeup(std::make_shared<Wakeup>(strand, timer)) {}

  void AbortAll(ServiceContext& ctx) {
    cancelled.store(true);
    for (auto& a : admissions) {
      if (a->stream) (void)ctx.engine->Abort(a->engine_id);
    }
  }

  std::shared_ptr<asio::steady_timer> timer;  // the coroutine waits on it; cancel() wakes it
  std::shared_ptr<Wakeup> wakeup;
  std::vector<std::unique_ptr<Admission>> admissions;
  std::vector<std::unique_ptr<OutputAccumulator>> accs;  // made at launch
  std::vector<bool> finished;
  std::atomic<bool> cancelled{false};  // client gone: the encoder skips, nothing launches
  bool client_gone = false;
  bool done = false;  // the coroutine moved on; late watcher completions do nothing
  int pending_images = 0;
  absl::Status launch_error;
};

// Whether the peer of a socket that woke a wait_read with nothing to read has hung up. The
// wake-up can be stale -- the reactor is edge-triggered and an edge for bytes the request parser
// already read can complete a wait queued after them (the soak saw live SSE streams cut and
// requests closed unanswered, ~1 in 1,500 under load) -- so confirm with a non-blocking peek:
// EOF or an error (ECONNRESET) is a hang-up, EAGAIN is not.
inline bool PeerHungUp(int fd) {
  char c;
  const ssize_t n = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return false;
  if (n == 0) return true;
  return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

// A client that stops reading holds its write (and the engine's output for it) for at most
// `limit`; then the socket is closed, the write fails and the request is aborted. No timer
// between writes: an idle stream's pings restart it.
template <class Stream, class Buffers>
awaitable<beast::error_code> TimedWrite(Stream& stream, const Buffers& buffers,
                                        std::chrono::steady_clock::duration limit) {
  auto& tcp_stream = beast::get_lowest_layer(stream);
  tcp_stream.expires_after(limit);
  auto [ec, n] = co_await asio::async_write(stream, buffers, kNoThrow);
  tcp_stream.expires_never();
  co_return ec;
}

template <class Stream>
void CancelIo(Stream& stream) {
  beast::error_code ec;
  beast::get_lowest_layer(stream).socket().cancel(ec);
}

}  // namespace muse::server::openai_io
