// The HTTP face: an OpenAI-compatible API (POST /v1/chat/completions, /v1/completions, GET
// /v1/models[/{id}], GET /health, vLLM's POST /tokenize and /detokenize) over HTTP/1.1 on
// Boost.Beast, beside gRPC and over the same core (service_context.h). Plain header (no Boost):
// server.cc and tests include it.
//
// Threads: `threads` io_context threads; one C++20 coroutine per connection on its own strand, so
// an idle SSE stream costs a coroutine frame and a socket, not a thread. The engine's notify hook
// only raises the generation's Wakeup (an atomic flag; the first raise since the last drain posts
// one wake to the strand); the coroutine then drains the request's OutputStream into one write,
// and never has more than one write in flight (a slow client only grows its own queue).
// A client disconnect (seen by a wait on the socket) or a failed write calls Engine::Abort at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "src/common/status.h"

namespace muse::server {

struct ServiceContext;

struct OpenAiServerOptions {
  std::string host = "0.0.0.0";
  int port = 0;  // 0 = ephemeral (see port())
  int threads = 2;
  int64_t max_body_bytes = 32ll << 20;               // larger: 413
  int64_t max_header_bytes = 16ll << 10;             // larger: 431
  absl::Duration ping_interval = absl::Seconds(15);  // `: ping` on idle SSE streams
  absl::Duration idle_timeout = absl::Seconds(120);  // keep-alive connection without a request
  // TLS (asio::ssl) with the gRPC flags' files: both or neither; a client CA requires client certs.
  std::string tls_cert, tls_key, tls_client_ca;
};

class OpenAiServer {
 public:
  // Binds and starts the io threads. `ctx` outlives the server; requests before ctx->ready are
  // 503 (as gRPC answers UNAVAILABLE).
  static absl::StatusOr<std::unique_ptr<OpenAiServer>> Start(ServiceContext* ctx,
                                                             const OpenAiServerOptions& options);
  ~OpenAiServer();  // Stop()
  OpenAiServer(const OpenAiServer&) = delete;
  OpenAiServer& operator=(const OpenAiServer&) = delete;

  int port() const;
  int64_t open_connections() const;
  int64_t open_generations() const;  // chat/completions requests admitted and not yet answered
  // Stops accepting, gives running generations up to `grace` (they end once the engine shut
  // down), then stops the io threads; idle keep-alive connections are closed. Idempotent.
  void Stop(absl::Duration grace = absl::Seconds(2));

  struct Impl;

 private:
  explicit OpenAiServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace muse::server
