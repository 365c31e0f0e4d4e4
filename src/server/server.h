// muse-server: the gRPC front end around one Engine. Plain header (no gRPC, no libtorch): tools
// and tests include it; the implementation lives in server.cc.
//
// Start(): validate options, load API keys, start listening (health NOT_SERVING; the HTTP API,
// when on, answers 503 until ready), start the metrics port, load the model, warm it up with one
// real forward, start the structured-output warm-up (background), then health SERVING. Drain():
// health NOT_SERVING, new requests UNAVAILABLE, wait for in-flight generations up to the grace
// period, abort the rest, stop gRPC and the engine.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "src/common/status.h"
#include "src/engine/engine_core.h"

namespace CLI {
class App;
}  // namespace CLI

namespace muse::server {

inline constexpr int kEphemeralPort = -1;

struct ServerOptions {
  std::string model_dir;
  std::string served_model_name;  // default: basename of model_dir
  std::string host = "0.0.0.0";
  int port = 50051;  // 0 = ephemeral (see Server::port())
  std::string device = "cpu";
  std::string dtype = "float32";
  int threads = 0;  // ATen intra-op threads; 0 = libtorch default
  // Tensor parallelism (issue 20): > 1 starts ranks 1..N-1 as muse-tp-worker processes.
  int tensor_parallel_size = 1;
  int tp_timeout_seconds = 30;
  bool device_sampling = true;  // cuda: sample on the device (RunnerOptions::device_sampling)
  int max_num_seqs = 64;
  int max_num_batched_tokens = 2048;
  int max_waiting = 256;  // queued requests beyond this are RESOURCE_EXHAUSTED
  int64_t kv_cache_bytes = 256ll << 20;
  int64_t num_kv_blocks = 0;  // > 0 overrides kv_cache_bytes
  int64_t max_model_len = 0;  // 0 = the model's max_position_embeddings
  uint64_t seed = 0;
  std::string api_keys_file;  // required unless no_auth
  bool no_auth = false;
  std::string tls_cert, tls_key;  // PEM files; both or neither
  std::string tls_client_ca;      // set: clients must present a certificate signed by it (mTLS)
  int metrics_port = -1;          // -1 = off, 0 = ephemeral
  // OpenAI-compatible HTTP API (openai_server.h): 0 = off, kEphemeralPort = any free port.
  int http_port = 0;
  int http_threads = 2;                                   // io_context threads
  int64_t http_max_body_bytes = 32ll << 20;               // larger bodies: 413
  absl::Duration http_ping_interval = absl::Seconds(15);  // `: ping` on idle SSE streams
  int max_receive_message_bytes = 32 << 20;
  // LLaVA models: encoder cache budget (projected embeddings, fp32) and per-image decode limits.
  int64_t encoder_cache_bytes = 256ll << 20;
  int64_t max_image_bytes = 20ll << 20;      // encoded size (after base64 for data: URIs)
  int64_t max_image_pixels = 4096ll * 4096;  // width * height, checked from the header
  absl::Duration image_encode_delay_for_testing = absl::ZeroDuration();  // tests only
  // Models with an audio tower (Muse, Qwen2-Audio): per-clip limits, checked from the header.
  int64_t max_audio_bytes = 32ll << 20;  // encoded size (after base64 for data: URIs)
  double max_audio_seconds = 600;        // longer clips are refused (the features keep 30 s)
  // Structured output: compiled grammars kept (least recently used dropped first).
  int grammar_cache_size = 512;
  // gRPC: threads that compile response formats the grammar cache does not hold (compile_pool.h).
  int structured_compile_threads = 2;
  // Chat output formats (chat_formats.h): "auto" (from the chat template), "none" or a name.
  std::string tool_call_parser = "auto";  // hermes | llama3_json | mistral
  std::string reasoning_parser = "auto";  // think
  // Reasoning models: the thinking budget of requests that do not set one (>= 0; unset = none).
  std::optional<int> thinking_token_budget;
  // At start, compile one representative JSON schema and json_object on the compile pool, so the
  // vocabulary's shared token classes (JSON string, number, ...) exist before the first request
  // (the first schema otherwise pays ~0.5 s for them). In the background unless
  // `structured_warmup_wait`, which holds health SERVING until it is done. muse-server's
  // --structured-warmup defaults to true; in-process servers (tests, embedders) opt in, so a test
  // process does not spend ~1 s of CPU per server on it (and Drain does not wait for it).
  bool structured_warmup = false;
  bool structured_warmup_wait = false;
  // Tests only: runs on a compile-pool thread right before a gRPC request's compile (after its
  // cancel check), so a test can hold requests there.
  std::function<void()> compile_hook_for_testing;
  // Tests only (fault injection, issue #15): wraps the runner the server built before the engine
  // takes it, e.g. in one that fails chosen steps.
  std::function<std::unique_ptr<runtime::ModelRunner>(std::unique_ptr<runtime::ModelRunner>)>
      wrap_runner_for_testing;
};

class Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options);
  ~Server();  // Drain(0) if still running

  int port() const;
  int metrics_port() const;  // -1 when off
  int http_port() const;     // -1 when off
  bool serving() const;
  engine::EngineStats EngineStats() const;
  // Generations admitted by either face whose RPC / HTTP response is not done yet (waiting at the
  // compile pool or the image encoder included).
  int64_t in_flight() const;
  int64_t http_connections() const;  // open connections of the OpenAI HTTP face
  // Graceful stop; idempotent. Returns once gRPC and the engine are stopped.
  void Drain(absl::Duration grace);
  // Not OK once the model runner is lost for good (a tensor-parallel worker died or hung): health
  // is NOT_SERVING, every request failed UNAVAILABLE; muse-server then exits non-zero.
  absl::Status fatal_error() const;

  struct Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// muse-server's command line: the ServerOptions plus the process-level settings main() uses.
struct ServerCommandLine {
  ServerOptions options;
  std::string log_level = "info";
  double drain_grace_seconds = 30;
};

// Registers every muse-server flag on `app` (the one list of them: `muse-server --help`), with
// range checks that name the flag. Parsing writes into `*flags`, which must outlive the parse.
void AddServerFlags(CLI::App& app, ServerCommandLine* flags);

}  // namespace muse::server
