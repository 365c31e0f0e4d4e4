// A tiny HTTP/1.1 responder for Prometheus scrapes on its own plain-TCP port: one socket thread,
// one request per connection (Connection: close), GET only. Routes: path -> handler returning
// (status code, body). Not for untrusted high-rate traffic; it serves metrics and /health.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <utility>

#include "src/common/status.h"

namespace muse::server {

class HttpEndpoint {
 public:
  using Handler = std::function<std::pair<int, std::string>()>;

  HttpEndpoint() = default;
  ~HttpEndpoint();
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

  void Route(std::string path, Handler handler) { routes_[std::move(path)] = std::move(handler); }
  // Binds host:port (port 0 = ephemeral) and starts the thread.
  absl::Status Start(const std::string& host, int port);
  int port() const { return port_; }
  void Stop();

 private:
  void Loop();
  void Serve(int fd);

  std::map<std::string, Handler> routes_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace muse::server
