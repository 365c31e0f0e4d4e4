#include "src/server/server.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "src/common/logging.h"
#include "src/runtime/model_runner.h"
#include "src/server/http_endpoint.h"
#include "src/server/inference_service.h"
#include "src/server/tokenizer_text.h"
#include "src/tokenizer/jinja/tokenizer_config.h"

namespace muse::server {

struct Server::Impl {
  ServerOptions options;
  ServiceContext ctx;
  std::unique_ptr<InferenceService> service;
  std::unique_ptr<grpc::Server> grpc_server;
  HttpEndpoint http;
  int port = 0;
  bool http_started = false;
  std::mutex drain_mu;
  bool drained = false;

  absl::Status LoadModel();
  absl::Status WarmUp();
  void SetServing(bool serving) {
    if (auto* h = grpc_server->GetHealthCheckService()) {
      h->SetServingStatus(serving);
      h->SetServingStatus("muse.v1.Inference", serving);
    }
  }
};

namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(what, ": cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(const ServerOptions& o) {
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (o.tls_cert.empty()) {
    if (!o.tls_client_ca.empty()) return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert");
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions ssl;
  ASSIGN_OR_RETURN(std::string cert, ReadFile(o.tls_cert, "--tls-cert"));
  ASSIGN_OR_RETURN(std::string key, ReadFile(o.tls_key, "--tls-key"));
  ssl.pem_key_cert_pairs.push_back({key, cert});
  if (!o.tls_client_ca.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadFile(o.tls_client_ca, "--tls-client-ca"));
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
  ASSIGN_OR_RETURN(auto runner, runtime::CreateModelRunner(ro));

  auto m = std::make_unique<ServedModel>();
  m->id = o.served_model_name.empty()
              ? std::filesystem::path(o.model_dir).lexically_normal().filename().string()
              : o.served_model_name;
  if (m->id.empty()) m->id = std::filesystem::path(o.model_dir).parent_path().filename().string();
  m->config = runner->config();
  m->kv_blocks_total = runner->num_kv_blocks();
  m->max_num_seqs = o.max_num_seqs;
  ASSIGN_OR_RETURN(m->tokenizer, tokenizer::Tokenizer::FromDirectory(o.model_dir));
  const std::string tc_path = o.model_dir + "/tokenizer_config.json";
  if (std::filesystem::exists(tc_path)) {
    ASSIGN_OR_RETURN(auto tc, jinja::LoadTokenizerConfig(tc_path));
    m->bos_token = tc.bos_token.value_or("");
    m->eos_token = tc.eos_token.value_or("");
    if (!tc.templates.empty()) {
      ASSIGN_OR_RETURN(std::string source, tc.SelectTemplate());  // the template text
      auto tmpl = jinja::ChatTemplate::Parse(std::move(source));
      if (tmpl.ok()) {
        m->chat_template.emplace(std::move(*tmpl));
      } else {
        spdlog::warn("chat template of {} is not supported ({}); chat requests are disabled",
                     o.model_dir, tmpl.status().ToString());
      }
    }
  }

  engine::EngineOptions eo;
  eo.scheduler.max_num_seqs = o.max_num_seqs;
  eo.scheduler.max_num_batched_tokens = o.max_num_batched_tokens;
  eo.scheduler.max_waiting = o.max_waiting;
  eo.max_model_len = o.max_model_len;
  eo.seed = o.seed;
  eo.text_decoder = std::make_shared<TokenizerDecoderFactory>(m->tokenizer.get());
  ASSIGN_OR_RETURN(ctx.engine, engine::Engine::Create(std::move(runner), eo));
  m->max_model_len = ctx.engine->max_model_len() > 0 ? ctx.engine->max_model_len() : (1 << 30);
  ctx.model = std::move(m);
  spdlog::info("model {} loaded: {} layers, vocab {}, context {}, {} KV blocks, chat template: {}",
               ctx.model->id, ctx.model->config.num_hidden_layers, ctx.model->config.vocab_size,
               ctx.model->max_model_len, ctx.model->kv_blocks_total,
               ctx.model->chat_template ? "yes" : "no");
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
  if (o.metrics_port >= 0) {
    p->http.Route("/metrics", [p] {
      engine::EngineStats s;
      if (p->ctx.engine) s = p->ctx.engine->Stats();
      return std::pair{200, p->ctx.metrics.Render(s, p->ctx.limiter.Usage())};
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
  p->ctx.ready = true;
  p->SetServing(true);
  spdlog::info("serving {}", p->ctx.model->id);
  return server;
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() { Drain(absl::ZeroDuration()); }

int Server::port() const { return impl_->port; }
int Server::metrics_port() const { return impl_->http_started ? impl_->http.port() : -1; }
bool Server::serving() const { return impl_->ctx.ready.load() && !impl_->ctx.draining.load(); }

engine::EngineStats Server::EngineStats() const {
  return impl_->ctx.engine ? impl_->ctx.engine->Stats() : engine::EngineStats{};
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
  while ((left = ctx.in_flight.load()) > 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(20));
  if (left > 0) spdlog::warn("drain grace over: aborting {} generation(s)", left);
  // Engine first: its shutdown ends every live stream, so the reactors finish their RPCs.
  if (ctx.engine) ctx.engine->Shutdown();
  impl_->grpc_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  impl_->grpc_server->Wait();
  impl_->http.Stop();
  spdlog::info("drained");
}

}  // namespace muse::server
