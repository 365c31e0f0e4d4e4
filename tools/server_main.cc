// muse-server: serve one model over gRPC (muse.v1.Inference + grpc.health.v1 + reflection).
// Flags: `muse-server --help` (declared once, in src/server/server_flags.cc).
//
// SIGTERM / SIGINT: health NOT_SERVING, new requests UNAVAILABLE, in-flight requests get
// --drain-grace-seconds to finish, then exit 0. A lost model runner (a tensor-parallel worker
// died or hung): requests fail UNAVAILABLE, health NOT_SERVING, exit 1.
#include <csignal>
#include <cstdio>
#include <exception>

#include "src/common/cli.h"
#include "src/common/logging.h"
#include "src/server/server.h"

int main(int argc, char** argv) try {
  CLI::App app("Serves one model over gRPC (muse.v1.Inference, health, reflection).",
               "muse-server");
  muse::cli::ConfigureApp(app);
  muse::server::ServerCommandLine flags;
  muse::server::AddServerFlags(app, &flags);
  if (auto rc = muse::cli::ParseCommandLine(app, argc, argv)) return *rc;
  muse::InitLogging(flags.log_level);

  // Block the signals before any thread starts so that only sigwait below sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto server = muse::server::Server::Start(flags.options);
  if (!server.ok()) {
    spdlog::error("muse-server: {}", server.status().ToString());
    return muse::cli::kExitFailure;
  }
  int sig = 0;
  while (true) {
    const timespec tick = {0, 200'000'000};
    sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig > 0) break;
    if (absl::Status fatal = (*server)->fatal_error(); !fatal.ok()) {
      spdlog::error("muse-server: exiting: {}", fatal.ToString());
      (*server)->Drain(absl::ZeroDuration());
      server->reset();
      return muse::cli::kExitFailure;
    }
  }
  spdlog::info("received {}: draining for up to {} s", sig == SIGTERM ? "SIGTERM" : "SIGINT",
               flags.drain_grace_seconds);
  (*server)->Drain(absl::Seconds(flags.drain_grace_seconds));
  server->reset();
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "muse-server: %s\n", e.what());
  return 1;
}
