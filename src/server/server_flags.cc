// muse-server's flags, declared once: main() parses with them, --help is generated from them and
// tests/server/server_flags_test.cc checks them.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <sstream>
#include <string>

#include "src/common/cli.h"
#include "src/server/chat_formats.h"
#include "src/server/server.h"

namespace muse::server {

using cli::AtLeast;
using cli::kUnsigned;

void AddServerFlags(CLI::App& app, ServerCommandLine* flags) {
  ServerOptions& o = flags->options;
  // A repeated flag takes its last value (as tools/cli.h sets for every binary).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  const CLI::Range kPort(0, 65535, "in [0, 65535]");

  app.add_option("--model", o.model_dir,
                 "model directory (config.json, safetensors, tokenizer.json)")
      ->required();
  app.add_option("--served-model-name", o.served_model_name,
                 "model id clients see (default: basename of --model)");
  app.add_option("--host", o.host, "address to listen on");
  app.add_option("--port", o.port, "gRPC port; 0 = ephemeral")->check(kPort);
  app.add_option("--device", o.device, "cpu, cuda or cuda:N");
  app.add_option("--dtype", o.dtype, "weight and activation dtype")
      ->check(CLI::IsMember({"float32", "fp32", "bfloat16", "bf16", "float16", "fp16"}));
  app.add_option(
      "--device-sampling", o.device_sampling,
      "cuda: sample on the device (true) or copy the logits to the host sampler (false)");
  app.add_option("--threads", o.threads, "CPU threads; 0 = every CPU in the affinity mask")
      ->check(AtLeast(0));
  app.add_option("--tensor-parallel-size", o.tensor_parallel_size,
                 "ranks one model is split over; > 1 starts muse-tp-worker processes (CPU, fp32)")
      ->check(AtLeast(1));
  app.add_option("--tp-timeout-seconds", o.tp_timeout_seconds,
                 "a tensor-parallel rank that does not answer for this long is lost: the server "
                 "fails its requests UNAVAILABLE and exits non-zero")
      ->check(AtLeast(1));

  app.add_option("--max-num-seqs", o.max_num_seqs, "most sequences in one engine step")
      ->check(AtLeast(1));
  app.add_option("--max-num-batched-tokens", o.max_num_batched_tokens, "token budget of one step")
      ->check(AtLeast(1));
  app.add_option("--max-waiting", o.max_waiting,
                 "queued requests beyond this are RESOURCE_EXHAUSTED")
      ->check(AtLeast(1));
  app.add_option("--kv-cache-bytes", o.kv_cache_bytes, "KV cache budget in bytes")
      ->check(AtLeast<int64_t>(1));
  app.add_option("--num-kv-blocks", o.num_kv_blocks, "KV blocks; > 0 overrides --kv-cache-bytes")
      ->check(AtLeast<int64_t>(0));
  app.add_option("--max-model-len", o.max_model_len,
                 "longest prompt + completion; 0 = the model's max_position_embeddings")
      ->check(AtLeast<int64_t>(0));
  app.add_option("--seed", o.seed, "seed of requests that set none")->check(kUnsigned);

  // Exactly one: serving without auth has to be asked for.
  CLI::Option_group* auth = app.add_option_group("auth", "authentication (exactly one)");
  auth->add_option("--api-keys", o.api_keys_file, "API key file (configs/api_keys.example.json)")
      ->check(CLI::ExistingFile);
  auth->add_flag("--no-auth", o.no_auth, "serve without authentication");
  auth->require_option(1);

  CLI::Option* cert = app.add_option("--tls-cert", o.tls_cert, "server certificate chain (PEM)")
                          ->check(CLI::ExistingFile);
  CLI::Option* key =
      app.add_option("--tls-key", o.tls_key, "server private key (PEM)")->check(CLI::ExistingFile);
  cert->needs(key);
  key->needs(cert);
  app.add_option("--tls-client-ca", o.tls_client_ca,
                 "require client certificates signed by this CA (mTLS)")
      ->check(CLI::ExistingFile)
      ->needs(cert);
  app.add_option("--metrics-port", o.metrics_port,
                 "HTTP /metrics and /health; -1 = off, 0 = ephemeral")
      ->check(CLI::Range(-1, 65535, "in [-1, 65535]"));
  app.add_option("--http-port", o.http_port,
                 "OpenAI-compatible HTTP API (/v1/chat/completions, ...); 0 = off")
      ->check(kPort);
  app.add_option("--http-threads", o.http_threads, "HTTP io threads (connections are coroutines)")
      ->check(AtLeast(1));
  app.add_option_function<double>(
         "--http-ping-seconds", [&o](double s) { o.http_ping_interval = absl::Seconds(s); },
         "`: ping` comment on an SSE stream idle this long (default 15)")
      ->check(CLI::Range(0.05, 3600.0));
  app.add_option("--http-max-body-bytes", o.http_max_body_bytes,
                 "largest HTTP request body, images included (larger: 413)")
      ->check(AtLeast<int64_t>(1024));
  app.add_option("--max-receive-message-bytes", o.max_receive_message_bytes,
                 "largest request, images included")
      ->check(AtLeast(1024));

  app.add_option("--encoder-cache-bytes", o.encoder_cache_bytes,
                 "image / audio models: budget of the cache of projected embeddings")
      ->check(AtLeast<int64_t>(0));
  app.add_option("--max-image-bytes", o.max_image_bytes, "LLaVA: largest encoded image")
      ->check(AtLeast<int64_t>(1));
  app.add_option("--max-image-pixels", o.max_image_pixels, "LLaVA: largest width * height")
      ->check(AtLeast<int64_t>(1));
  app.add_option("--max-audio-bytes", o.max_audio_bytes, "audio models: largest encoded clip")
      ->check(AtLeast<int64_t>(1));
  app.add_option("--max-audio-seconds", o.max_audio_seconds,
                 "audio models: longest clip (checked from the header; the features keep the "
                 "model's window, 30 s)")
      ->check(CLI::Range(0.01, 86400.0));

  app.add_option("--grammar-cache-size", o.grammar_cache_size,
                 "structured output: compiled grammars (response_format) kept in memory")
      ->check(AtLeast(1));
  app.add_option("--structured-compile-threads", o.structured_compile_threads,
                 "structured output: threads compiling new response formats of gRPC requests "
                 "(off the gRPC threads)")
      ->check(AtLeast(1));
  o.structured_warmup = true;  // the binary warms up by default (ServerOptions: opt-in)
  app.add_option("--structured-warmup", o.structured_warmup,
                 "structured output: at start, compile a representative JSON schema and "
                 "json_object in the background so the first request finds the shared token "
                 "classes (true|false)");
  app.add_option("--structured-warmup-wait", o.structured_warmup_wait,
                 "structured output: hold health SERVING until that warm-up is done (true|false)");
  app.add_option("--tool-call-parser", o.tool_call_parser,
                 "tool calls in the model's own format (tool_choice auto): auto (from the chat "
                 "template), none, hermes, llama3_json or mistral")
      ->check(CLI::IsMember(ToolCallParserFlagValues()));
  app.add_option("--reasoning-parser", o.reasoning_parser,
                 "reasoning channel (reasoning_content): auto (from the chat template), none or "
                 "think (<think> ... </think>)")
      ->check(CLI::IsMember(ReasoningParserFlagValues()));
  app.add_option("--thinking-token-budget", o.thinking_token_budget,
                 "reasoning models: at most this many tokens in a <think> block, then </think> "
                 "is forced, for requests that set no thinking_token_budget (default: none)")
      ->check(AtLeast(0));

  app.add_option("--log-level", flags->log_level, "log level")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.add_option("--drain-grace-seconds", flags->drain_grace_seconds,
                 "on SIGTERM/SIGINT, how long in-flight requests may finish")
      ->check(AtLeast(0.0));
}

}  // namespace muse::server
