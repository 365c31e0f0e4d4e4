// muse-server: serve one model over gRPC (muse.v1.Inference + grpc.health.v1 + reflection).
//
//   muse-server --model DIR [--port 50051] [--host 0.0.0.0] [--threads N]
//               [--max-num-seqs N] [--max-num-batched-tokens N] [--max-waiting N]
//               [--kv-cache-bytes B | --num-kv-blocks N] [--max-model-len N]
//               (--api-keys FILE | --no-auth) [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]
//               [--metrics-port P] [--log-level info] [--drain-grace-seconds 30]
//               [--served-model-name NAME] [--device cpu] [--dtype float32]
//               [--max-receive-message-bytes 33554432]
//               [--encoder-cache-bytes 268435456] [--max-image-bytes 20971520]
//               [--max-image-pixels 16777216]   (LLaVA model directories)
//
// SIGTERM / SIGINT: health NOT_SERVING, new requests UNAVAILABLE, in-flight requests get
// --drain-grace-seconds to finish, then exit 0.
#include <csignal>
#include <cstdio>
#include <cstring>

#include "src/common/logging.h"
#include "src/server/server.h"

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      std::fputs(
          "usage: muse-server --model DIR (--api-keys FILE | --no-auth) [--port 50051] [--host H]\n"
          "  [--threads N] [--max-num-seqs N] [--max-num-batched-tokens N] [--max-waiting N]\n"
          "  [--kv-cache-bytes B | --num-kv-blocks N] [--max-model-len N] [--seed S]\n"
          "  [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]] [--metrics-port P]\n"
          "  [--log-level trace|debug|info|warn|error] [--drain-grace-seconds S]\n"
          "  [--served-model-name NAME] [--device cpu|cuda] [--dtype float32|bfloat16|float16]\n"
          "  [--max-receive-message-bytes B] [--encoder-cache-bytes B] [--max-image-bytes B]\n"
          "  [--max-image-pixels N]\n",
          stdout);
      return 0;
    }
  }
  std::string log_level = "info";
  double grace = 30;
  auto options = muse::server::ParseServerFlags(argc, argv, &log_level, &grace);
  if (!options.ok()) {
    std::fprintf(stderr, "muse-server: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  muse::InitLogging(log_level);

  // Block the signals before any thread starts so that only sigwait below sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto server = muse::server::Server::Start(*options);
  if (!server.ok()) {
    spdlog::error("muse-server: {}", server.status().ToString());
    return 1;
  }
  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("received {}: draining for up to {} s", sig == SIGTERM ? "SIGTERM" : "SIGINT", grace);
  (*server)->Drain(absl::Seconds(grace));
  server->reset();
  return 0;
}
