#include "src/server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <filesystem>
#include <future>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "models/llava/image_encoder.h"
#include "models/llava/llava_config.h"
#include "models/muse/muse_config.h"
#include "models/qwen2_audio/audio_encoder.h"
#include "src/common/file_util.h"
#include "src/common/logging.h"
#include "src/runtime/model_runner.h"
#include "src/server/http_endpoint.h"
#include "src/server/inference_service.h"
#include "src/server/openai_server.h"
#include "src/server/tokenizer_text.h"
#include "src/tokenizer/jinja/tokenizer_config.h"

namespace muse::server {

struct Server::Impl {
  ServerOptions options;
  ServiceContext ctx;
  std::unique_ptr<InferenceService> service;
  std::unique_ptr<grpc::Server> grpc_server;
  HttpEndpoint http;
  std::unique_ptr<OpenAiServer> openai;  // after ctx: destroyed first
  int port = 0;
  bool http_started = false;
  std::mutex drain_mu;
  bool drained = false;
  mutable std::mutex fatal_mu;
  absl::Status fatal;  // the runner's loss (EngineOptions::on_runner_lost)

  absl::Status LoadModel();
  absl::Status LoadVision(ServedModel& m, std::unique_ptr<models::llava::ImageEncoder>* out);
  absl::Status LoadAudio(ServedModel& m, std::unique_ptr<models::qwen2_audio::AudioEncoder>* out);
  absl::Status WarmUp();
  // Submits the structured-output warm-up to the compile pool; the future is ready when it ends.
  std::shared_future<void> WarmUpStructured();
  void SetServing(bool serving) {
    if (auto* h = grpc_server->GetHealthCheckService()) {
      h->SetServingStatus(serving);
      h->SetServingStatus("muse.v1.Inference", serving);
    }
  }
};

namespace {

constexpr int kPumpThreads = 2;

// The file named by command-line flag `flag`; errors start with the flag, then the path.
absl::StatusOr<std::string> ReadFlagFile(const std::string& path, const char* flag) {
  auto text = muse::ReadFile(path);
  if (!text.ok())
    return absl::Status(text.status().code(), absl::StrCat(flag, ": ", text.status().message()));
  return text;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(const ServerOptions& o) {
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (o.tls_cert.empty()) {
    if (!o.tls_client_ca.empty())
      return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert");
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions ssl;
  ASSIGN_OR_RETURN(std::string cert, ReadFlagFile(o.tls_cert, "--tls-cert"));
  ASSIGN_OR_RETURN(std::string key, ReadFlagFile(o.tls_key, "--tls-key"));
  ssl.pem_key_cert_pairs.push_back({key, cert});
  if (!o.tls_client_ca.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadFlagFile(o.tls_client_ca, "--tls-client-ca"));
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

absl::Status Server::Impl::LoadModel() {
  const ServerOptions& o = options;
  runtime::RunnerOptions ro;
  ro.model_dir = o.model_dir;
  ro.device = o.device;
  ro.dtype = o.dtype;
  ro.num_threads = o.threads;
  ro.num_kv_blocks = o.num_kv_blocks;
  ro.kv_cache_bytes = o.kv_cache_bytes;
  ro.device_sampling = o.device_sampling;
  ro.tensor_parallel_size = o.tensor_parallel_size;
  ro.tensor_parallel_timeout_seconds = o.tp_timeout_seconds;
  ASSIGN_OR_RETURN(auto runner, runtime::CreateModelRunner(ro));
  if (o.wrap_runner_for_testing) runner = o.wrap_runner_for_testing(std::move(runner));

  auto m = std::make_unique<ServedModel>();
  m->id = o.served_model_name.empty()
              ? std::filesystem::path(o.model_dir).lexically_normal().filename().string()
              : o.served_model_name;
  if (m->id.empty()) m->id = std::filesystem::path(o.model_dir).parent_path().filename().string();
  m->config = runner->config();
  m->kv_blocks_total = runner->num_kv_blocks();
  m->max_num_seqs = o.max_num_seqs;
  ASSIGN_OR_RETURN(m->tokenizer, tokenizer::Tokenizer::FromDirectory(o.model_dir));
  std::string template_source;  // for ResolveChatFormats
  const std::string tc_path = o.model_dir + "/tokenizer_config.json";
  if (std::filesystem::exists(tc_path)) {
    ASSIGN_OR_RETURN(auto tc, jinja::LoadTokenizerConfig(tc_path));
    m->bos_token = tc.bos_token.value_or("");
    m->eos_token = tc.eos_token.value_or("");
    if (!tc.templates.empty()) {
      ASSIGN_OR_RETURN(std::string source, tc.SelectTemplate());  // the template text
      template_source = source;
      auto tmpl = jinja::ChatTemplate::Parse(std::move(source));
      if (tmpl.ok()) {
        m->chat_template.emplace(std::move(*tmpl));
      } else {
        spdlog::warn("chat template of {} is not supported ({}); chat requests are disabled",
                     o.model_dir, tmpl.status().ToString());
      }
    }
  }

  ASSIGN_OR_RETURN(m->chat_formats,
                   ResolveChatFormats(o.tool_call_parser, o.reasoning_parser, template_source,
                                      m->chat_template ? &*m->chat_template : nullptr, m->bos_token,
                                      m->eos_token));
  spdlog::info("chat output: tool-call parser {}, reasoning channel {}",
               m->chat_formats.tool_call_parser.empty() ? "none" : m->chat_formats.tool_call_parser,
               !m->chat_formats.reasoning ? "none"
               : m->chat_formats.reasoning_options.start == chat::ReasoningStart::kInsideBlock
                   ? "<think> (opened by the prompt)"
                   : "<think>");
  std::unique_ptr<models::llava::ImageEncoder> image_encoder;
  std::unique_ptr<models::qwen2_audio::AudioEncoder> audio_encoder;
  if (models::llava::IsLlavaModelDir(o.model_dir)) RETURN_IF_ERROR(LoadVision(*m, &image_encoder));
  if (models::qwen2_audio::IsQwen2AudioModelDir(o.model_dir)) {
    RETURN_IF_ERROR(LoadAudio(*m, &audio_encoder));
  }
  if (image_encoder || audio_encoder) {
    // One encoder thread for both towers (image_encoder_worker.h says why).
    ctx.encoder_cache = std::make_unique<vision::EncoderCache>(o.encoder_cache_bytes);
    ctx.image_encoder = std::make_unique<ImageEncoderWorker>(
        std::move(image_encoder), ctx.encoder_cache.get(), &ctx.metrics,
        o.image_encode_delay_for_testing, std::move(audio_encoder));
    spdlog::info("encoder cache {} MiB", o.encoder_cache_bytes >> 20);
  }
  const absl::Time vocab_start = absl::Now();
  m->structured = LoadStructuredOutput(
      *m->tokenizer, m->config.vocab_size, m->config.eos_token_ids,
      static_cast<size_t>(o.grammar_cache_size),
      [metrics = &ctx.metrics](structured::ConstraintKind kind, double seconds, bool ok) {
        metrics->RecordGrammarCompile(structured::ConstraintKindName(kind), seconds, ok);
      });
  if (m->structured.cache == nullptr) {
    spdlog::warn("structured output (response_format) is unavailable: {}",
                 m->structured.unavailable);
  } else {
    spdlog::info("structured output: vocabulary of {} tokens as bytes in {:.0f} ms",
                 m->structured.cache->vocab()->vocab_size(),
                 absl::ToDoubleMilliseconds(absl::Now() - vocab_start));
  }

  engine::EngineOptions eo;
  eo.scheduler.max_num_seqs = o.max_num_seqs;
  eo.scheduler.max_num_batched_tokens = o.max_num_batched_tokens;
  eo.scheduler.max_waiting = o.max_waiting;
  eo.max_model_len = o.max_model_len;
  eo.seed = o.seed;
  eo.sampling_threads = o.threads;  // as many as the runner's CPU threads (0: every CPU)
  eo.text_decoder = std::make_shared<TokenizerDecoderFactory>(m->tokenizer.get());
  eo.on_runner_lost = [this](const absl::Status& st) {
    spdlog::error("model runner lost: {}; NOT_SERVING", st.ToString());
    {
      std::lock_guard lock(fatal_mu);
      fatal = st;
    }
    ctx.draining = true;  // new requests: UNAVAILABLE
    SetServing(false);
  };
  ASSIGN_OR_RETURN(ctx.engine, engine::Engine::Create(std::move(runner), eo));
  m->max_model_len = ctx.engine->max_model_len() > 0 ? ctx.engine->max_model_len() : (1 << 30);
  ctx.model = std::move(m);
  spdlog::info(
      "model {} loaded: {} layers, vocab {}, context {}, {} KV blocks, chat template: {}, images: "
      "{}, audio: {}",
      ctx.model->id, ctx.model->config.num_hidden_layers, ctx.model->config.vocab_size,
      ctx.model->max_model_len, ctx.model->kv_blocks_total, ctx.model->chat_template ? "yes" : "no",
      ctx.model->supports_images ? "yes" : "no", ctx.model->audio ? "yes" : "no");
  return absl::OkStatus();
}

// LLaVA: preprocessor config, vision tower + projector (warmed up with one blank image), the
// encoder cache and the image-encoder thread.
absl::Status Server::Impl::LoadVision(ServedModel& m,
                                      std::unique_ptr<models::llava::ImageEncoder>* out) {
  const ServerOptions& o = options;
  ASSIGN_OR_RETURN(auto lc, models::llava::LoadLlavaConfig(o.model_dir));
  VisionInfo v;
  ASSIGN_OR_RETURN(v.preprocessor, vision::LoadPreprocessorConfig(o.model_dir));
  v.limits.max_bytes = o.max_image_bytes;
  v.limits.max_pixels = o.max_image_pixels;
  v.image_token_id = static_cast<int32_t>(lc.image_token_index);
  if (v.image_token_id < 0 || v.image_token_id >= m.config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(o.model_dir, ": image_token_index ",
                                                   v.image_token_id, " is outside the vocabulary (",
                                                   m.config.vocab_size, ")"));
  }
  v.image_token = m.tokenizer->IdToToken(v.image_token_id).value_or("");
  if (v.image_token.empty()) {
    spdlog::warn(
        "{}: the tokenizer has no token for image_token_index {}; only prompt_token_ids can "
        "place images",
        o.model_dir, v.image_token_id);
  }
  v.num_image_tokens = static_cast<int32_t>(lc.num_image_tokens());
  v.hidden_size = static_cast<int32_t>(lc.text.hidden_size);
  models::llava::ImageEncoderOptions eo;
  eo.dtype = o.dtype;
  eo.num_threads = o.threads;
  ASSIGN_OR_RETURN(auto encoder, models::llava::CreateImageEncoder(o.model_dir, eo));
  vision::PixelValues blank;
  blank.height = blank.width = static_cast<int>(lc.vision.image_size);
  blank.data.assign(size_t{3} * blank.height * blank.width, 0.0f);
  if (auto w = encoder->EncodeBatch({&blank}); !w.ok()) {
    return absl::InternalError(
        absl::StrCat("image encoder warm-up failed: ", w.status().message()));
  }
  *out = std::move(encoder);
  spdlog::info("vision: {} image token(s) per image, placeholder {} ({})", v.num_image_tokens,
               v.image_token, v.image_token_id);
  m.vision = std::move(v);
  m.supports_images = true;
  return absl::OkStatus();
}

// Muse / Qwen2-Audio: Whisper feature settings, the audio tower + projector (warmed up with one
// clip of silence).
absl::Status Server::Impl::LoadAudio(ServedModel& m,
                                     std::unique_ptr<models::qwen2_audio::AudioEncoder>* out) {
  const ServerOptions& o = options;
  ASSIGN_OR_RETURN(auto ac, models::qwen2_audio::LoadQwen2AudioConfig(o.model_dir));
  AudioInfo a;
  ASSIGN_OR_RETURN(a.features, models::muse_composite::LoadAudioFeatureConfig(o.model_dir));
  if (a.features.feature_size != ac.audio.num_mel_bins ||
      a.features.nb_max_frames() != ac.audio.input_frames()) {
    return absl::InvalidArgumentError(absl::StrCat(
        o.model_dir, "/preprocessor_config.json: feature_size ", a.features.feature_size, " x ",
        a.features.nb_max_frames(), " frames does not match the audio tower's ",
        ac.audio.num_mel_bins, " x ", ac.audio.input_frames()));
  }
  a.limits.max_bytes = o.max_audio_bytes;
  a.limits.max_seconds = o.max_audio_seconds;
  a.audio_token_id = static_cast<int32_t>(ac.audio_token_index);
  if (a.audio_token_id < 0 || a.audio_token_id >= m.config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(o.model_dir, ": audio_token_index ",
                                                   a.audio_token_id, " is outside the vocabulary (",
                                                   m.config.vocab_size, ")"));
  }
  a.audio_token = m.tokenizer->IdToToken(a.audio_token_id).value_or("");
  if (a.audio_token.empty()) {
    spdlog::warn(
        "{}: the tokenizer has no token for audio_token_index {}; only prompt_token_ids can "
        "place audio",
        o.model_dir, a.audio_token_id);
  }
  a.hidden_size = static_cast<int32_t>(ac.text.hidden_size);
  models::qwen2_audio::AudioEncoderOptions eo;
  eo.dtype = o.dtype;
  eo.num_threads = o.threads;
  ASSIGN_OR_RETURN(auto encoder, models::qwen2_audio::CreateAudioEncoder(o.model_dir, eo));
  audio::LogMel silence;
  silence.n_mels = a.features.feature_size;
  silence.n_frames = a.features.nb_max_frames();
  silence.valid_frames = 100;
  silence.data.assign(static_cast<size_t>(silence.n_mels) * silence.n_frames, -1.5f);
  if (auto w = encoder->Encode(silence); !w.ok()) {
    return absl::InternalError(
        absl::StrCat("audio encoder warm-up failed: ", w.status().message()));
  }
  *out = std::move(encoder);
  spdlog::info("audio: {} mel bins, {} s window (up to {} audio tokens), placeholder {} ({})",
               a.features.feature_size, a.features.chunk_length, ac.max_audio_tokens(),
               a.audio_token, a.audio_token_id);
  m.audio = std::move(a);
  return absl::OkStatus();
}

absl::Status Server::Impl::WarmUp() {
  engine::Request r;
  r.id = "warmup";
  const int64_t bos = ctx.model->config.bos_token_id;
  r.prompt_token_ids = {static_cast<int32_t>(bos >= 0 ? bos : 0)};
  r.sampling.max_tokens = 2;
  r.sampling.temperature = 0;
  ASSIGN_OR_RETURN(auto stream, ctx.engine->AddRequest(std::move(r)));
  while (auto out = stream->Next()) {
    if (out->finished && !out->error.ok()) return out->error;
  }
  return absl::OkStatus();
}

namespace {

// What the structured-output warm-up compiles: the sub-parses most schemas share -- strings with
// and without a length bound, numbers, integers (free and ranged), booleans, enums, arrays,
// nested objects -- plus json_object (any JSON value's rules).
constexpr char kWarmupSchema[] = R"({"type": "object", "properties": {
  "name": {"type": "string"}, "code": {"type": "string", "maxLength": 16},
  "score": {"type": "number"}, "count": {"type": "integer"}, "ok": {"type": "boolean"},
  "tags": {"type": "array", "items": {"type": "string"}},
  "meta": {"type": "object", "properties": {"id": {"type": "integer", "minimum": 0,
           "maximum": 1000}, "kind": {"enum": ["a", "b"]}}, "required": ["id"]}},
  "required": ["name", "score"]})";

}  // namespace

std::shared_future<void> Server::Impl::WarmUpStructured() {
  auto done = std::make_shared<std::promise<void>>();
  std::shared_future<void> future = done->get_future().share();
  // Bypasses the grammar cache (no entries, no compile metrics): what it leaves behind is the
  // vocabulary's shared token classes, which every later compile reuses.
  ctx.compiles->Submit([this, done](const absl::Status& pool) {
    if (pool.ok()) {
      const structured::GrammarCache& cache = *ctx.model->structured.cache;
      const absl::Time start = absl::Now();
      structured::Constraint schema, object;
      schema.kind = structured::ConstraintKind::kJsonSchema;
      schema.text = kWarmupSchema;
      object.kind = structured::ConstraintKind::kJsonObject;
      for (const structured::Constraint* c : {&schema, &object}) {
        auto g = structured::CompileConstraint(*c, cache.vocab());
        if (!g.ok()) {  // a bug, not a bad request: the server still serves
          spdlog::error("structured output warm-up: {} failed: {}",
                        structured::ConstraintKindName(c->kind), g.status().ToString());
        }
      }
      spdlog::info(
          "structured output warm-up: a JSON schema and json_object compiled in {:.0f} ms ({} "
          "shared token classes)",
          absl::ToDoubleMilliseconds(absl::Now() - start), cache.stats().shared_token_classes);
    }
    done->set_value();
  });
  return future;
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& o) {
  auto impl = std::make_unique<Impl>();
  impl->options = o;
  if (o.model_dir.empty()) return absl::InvalidArgumentError("--model is required");
  if (o.no_auth == !o.api_keys_file.empty()) {
    return absl::InvalidArgumentError("pass exactly one of --api-keys FILE or --no-auth");
  }
  if (!o.no_auth) {
    ASSIGN_OR_RETURN(impl->ctx.keys, ApiKeys::FromFile(o.api_keys_file));
  }
  ASSIGN_OR_RETURN(auto creds, Credentials(o));

  // Pump threads turn engine output into gRPC writes. The per-pump work is small (merge, serialise,
  // StartWrite); two threads keep up with hundreds of streams per step without taking the cores
  // the runner needs.
  impl->ctx.pumps = std::make_unique<PumpPool>(kPumpThreads);
  impl->ctx.compiles = std::make_unique<CompilePool>(o.structured_compile_threads);
  impl->ctx.compile_hook_for_testing = o.compile_hook_for_testing;
  if (o.thinking_token_budget && *o.thinking_token_budget < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--thinking-token-budget must be >= 0, got ", *o.thinking_token_budget));
  }
  impl->ctx.default_thinking_token_budget = o.thinking_token_budget;
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  impl->service = std::make_unique<InferenceService>(&impl->ctx);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat(o.host, ":", o.port), creds, &impl->port);
  builder.SetMaxReceiveMessageSize(o.max_receive_message_bytes);
  builder.RegisterService(impl->service.get());
  impl->grpc_server = builder.BuildAndStart();
  if (!impl->grpc_server || impl->port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", o.host, ":", o.port));
  }
  impl->SetServing(false);
  spdlog::info("gRPC listening on {}:{} ({}, auth {})", o.host, impl->port,
               o.tls_cert.empty() ? "plaintext" : (o.tls_client_ca.empty() ? "TLS" : "mTLS"),
               o.no_auth ? "OFF (--no-auth)" : "on");

  Impl* p = impl.get();
  if (o.http_port != 0) {
    OpenAiServerOptions ho;
    ho.host = o.host;
    ho.port = o.http_port == kEphemeralPort ? 0 : o.http_port;
    ho.threads = o.http_threads;
    ho.max_body_bytes = o.http_max_body_bytes;
    ho.ping_interval = o.http_ping_interval;
    ho.tls_cert = o.tls_cert;
    ho.tls_key = o.tls_key;
    ho.tls_client_ca = o.tls_client_ca;
    ASSIGN_OR_RETURN(p->openai, OpenAiServer::Start(&p->ctx, ho));
  }
  if (o.metrics_port >= 0) {
    p->http.Route("/metrics", [p] {
      engine::EngineStats s;
      if (p->ctx.engine) s = p->ctx.engine->Stats();
      ImageCacheStats images;
      if (p->ctx.ready.load() && p->ctx.encoder_cache) {
        const vision::EncoderCache& c = *p->ctx.encoder_cache;
        images = {c.hits(), c.misses(), c.evictions(), c.size_bytes(),
                  static_cast<int64_t>(c.num_entries())};
      }
      const bool vision = p->ctx.ready.load() && p->ctx.encoder_cache;
      std::optional<structured::GrammarCacheStats> grammars;
      if (p->ctx.ready.load() && p->ctx.model->structured.cache) {
        grammars = p->ctx.model->structured.cache->stats();
      }
      return std::pair{200,
                       p->ctx.metrics.Render(s, p->ctx.limiter.Usage(), vision ? &images : nullptr,
                                             grammars ? &*grammars : nullptr)};
    });
    p->http.Route("/health", [p] {
      const bool ok = p->ctx.ready.load() && !p->ctx.draining.load();
      return std::pair{ok ? 200 : 503, std::string(ok ? "SERVING\n" : "NOT_SERVING\n")};
    });
    RETURN_IF_ERROR(p->http.Start(o.host, o.metrics_port));
    p->http_started = true;
    spdlog::info("metrics on http://{}:{}/metrics", o.host, p->http.port());
  }

  std::unique_ptr<Server> server(new Server(std::move(impl)));
  if (absl::Status st = p->LoadModel(); !st.ok()) return st;
  if (absl::Status st = p->WarmUp(); !st.ok()) {
    return absl::InternalError(absl::StrCat("warm-up forward failed: ", st.message()));
  }
  if (o.structured_warmup && p->ctx.model->structured.cache != nullptr) {
    std::shared_future<void> warm = p->WarmUpStructured();
    if (o.structured_warmup_wait) warm.wait();
  }
  p->ctx.ready = true;
  p->SetServing(true);
  spdlog::info("serving {}", p->ctx.model->id);
  return server;
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() { Drain(absl::ZeroDuration()); }

int Server::port() const { return impl_->port; }
int Server::metrics_port() const { return impl_->http_started ? impl_->http.port() : -1; }
int Server::http_port() const { return impl_->openai ? impl_->openai->port() : -1; }
absl::Status Server::fatal_error() const {
  std::lock_guard lock(impl_->fatal_mu);
  return impl_->fatal;
}

bool Server::serving() const { return impl_->ctx.ready.load() && !impl_->ctx.draining.load(); }

engine::EngineStats Server::EngineStats() const {
  return impl_->ctx.engine ? impl_->ctx.engine->Stats() : engine::EngineStats{};
}

int64_t Server::in_flight() const { return impl_->ctx.in_flight.load(); }
int64_t Server::http_connections() const {
  return impl_->openai ? impl_->openai->open_connections() : 0;
}

void Server::Drain(absl::Duration grace) {
  std::lock_guard lock(impl_->drain_mu);
  if (impl_->drained) return;
  impl_->drained = true;
  ServiceContext& ctx = impl_->ctx;
  ctx.draining = true;
  impl_->SetServing(false);
  const absl::Time deadline = absl::Now() + grace;
  int64_t left = ctx.in_flight.load();
  spdlog::info("draining: {} generation(s) in flight, grace {}", left, absl::FormatDuration(grace));
  while ((left = ctx.in_flight.load()) > 0 && absl::Now() < deadline)
    absl::SleepFor(absl::Milliseconds(20));
  if (left > 0) spdlog::warn("drain grace over: aborting {} generation(s)", left);
  // Compile pool and image encoder first (requests still waiting for them finish UNAVAILABLE and
  // never reach the engine), then the engine: its shutdown ends every live stream, so the
  // reactors finish.
  ctx.compiles->Stop();
  if (ctx.image_encoder) ctx.image_encoder->Stop();
  if (ctx.engine) ctx.engine->Shutdown();
  impl_->grpc_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  impl_->grpc_server->Wait();
  // Every RPC is done (OnDone ran): what is still queued can only be a no-op pump.
  ctx.pumps->Stop();
  // The engine is down, so every HTTP generation has its final message: let them write it.
  if (impl_->openai) impl_->openai->Stop(absl::Seconds(2));
  impl_->http.Stop();
  spdlog::info("drained");
}

}  // namespace muse::server
