// muse: command-line client for muse-server. `muse --help`, `muse <command> --help`.
//
//   muse generate --prompt TEXT [--image PATH]... [--audio PATH]... [--no-stream]   a completion
//                                                 of raw text; each <image> placeholder takes the
//                                                 next --image, each audio placeholder (<|AUDIO|>)
//                                                 the next --audio
//   muse chat [--system TEXT] [--image PATH]... [--audio PATH]...   read lines from stdin, keep
//                                                 the conversation, stream each answer; --image
//                                                 and --audio go with the next user line
//   muse tokenize --prompt TEXT [--tokens]
//   muse models
//
// Connection flags (--addr, --api-key or $MUSE_API_KEY, --tls-*, --timeout) go before or after
// the command. Answers go to stdout; the prompt "> ", usage and errors (as gRPC status names:
// "INVALID_ARGUMENT: ...") to stderr. Exit 0, 1 (an RPC or a file failed), 2 (usage).
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "muse/v1/inference.grpc.pb.h"
#include "src/common/cli.h"
#include "src/common/file_util.h"
#include "src/common/logging.h"

namespace {

using muse::cli::kExitFailure;

struct Flags {
  std::string addr = "localhost:50051", api_key, prompt, system;
  std::string tls_ca, tls_cert, tls_key;
  std::vector<std::string> stop;
  std::vector<std::string> images;  // --image PATH (repeatable)
  std::vector<std::string> audios;  // --audio PATH (repeatable): WAV, FLAC, Ogg, MP3
  int max_tokens = 256, n = 1;
  std::optional<int> top_k;
  std::optional<double> temperature, top_p;
  std::optional<uint64_t> seed;
  double timeout = 0;
  std::string priority;
  bool no_stream = false, tokens = false, ids = false;
};

// grpc::StatusCode's names (gRPC 1.51 has no public function for them).
const char* StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    default:
      return "UNKNOWN_CODE";
  }
}

int Fail(const grpc::Status& st) {
  std::fprintf(stderr, "muse: %s: %s\n", StatusCodeName(st.error_code()),
               st.error_message().c_str());
  return kExitFailure;
}

int Fail(const absl::Status& st) {
  std::fprintf(stderr, "muse: %s\n", std::string(st.message()).c_str());
  return kExitFailure;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(const Flags& f) {
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!f.tls_ca.empty()) {
    grpc::SslCredentialsOptions o;
    ASSIGN_OR_RETURN(o.pem_root_certs, muse::ReadFile(f.tls_ca));
    if (!f.tls_cert.empty()) {
      ASSIGN_OR_RETURN(o.pem_cert_chain, muse::ReadFile(f.tls_cert));
      ASSIGN_OR_RETURN(o.pem_private_key, muse::ReadFile(f.tls_key));
    }
    creds = grpc::SslCredentials(o);
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(f.addr, creds, args);
}

void Prepare(const Flags& f, grpc::ClientContext* ctx) {
  if (!f.api_key.empty()) ctx->AddMetadata("authorization", "Bearer " + f.api_key);
  if (f.timeout > 0) {
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(static_cast<int64_t>(f.timeout * 1000)));
  }
}

void FillParams(const Flags& f, muse::v1::GenerateRequest* r) {
  auto* s = r->mutable_sampling();
  if (f.temperature) s->set_temperature(static_cast<float>(*f.temperature));
  if (f.top_p) s->set_top_p(static_cast<float>(*f.top_p));
  if (f.top_k) s->set_top_k(*f.top_k);
  if (f.seed) s->set_seed(*f.seed);
  if (f.n != 1) s->set_n(f.n);
  r->mutable_stopping()->set_max_tokens(f.max_tokens);
  for (const auto& st : f.stop) r->mutable_stopping()->add_stop(st);
  if (f.priority == "interactive") r->set_priority(muse::v1::PRIORITY_INTERACTIVE);
  if (f.priority == "batch") r->set_priority(muse::v1::PRIORITY_BATCH);
}

// Streams one request; prints text as it arrives; returns the text of sample 0.
int StreamOnce(const Flags& f, muse::v1::Inference::Stub& stub,
               const muse::v1::GenerateRequest& req, std::string* answer) {
  grpc::ClientContext ctx;
  Prepare(f, &ctx);
  auto reader = stub.Generate(&ctx, req);
  muse::v1::GenerateResponse resp;
  bool streamed = false;
  while (reader->Read(&resp)) {
    for (const auto& s : resp.samples()) {
      if (s.index() == 0) {
        streamed = true;
        if (answer) *answer += s.text();
        if (f.ids) {
          for (int id : s.token_ids()) std::printf("%d ", id);
        } else {
          std::fputs(s.text().c_str(), stdout);
        }
        std::fflush(stdout);
      }
    }
    if (resp.finished()) {
      std::fprintf(stderr,
                   "\n[%lld prompt + %lld completion tokens, ttft %.1f ms, total %.1f ms]\n",
                   static_cast<long long>(resp.usage().prompt_tokens()),
                   static_cast<long long>(resp.usage().completion_tokens()),
                   resp.timings().ttft_ms(), resp.timings().total_ms());
    }
  }
  grpc::Status st = reader->Finish();
  if (st.ok()) return 0;
  if (streamed) std::fputc('\n', stderr);  // end the partly streamed answer line on a terminal
  return Fail(st);
}

int Models(const Flags& f, muse::v1::Inference::Stub& stub) {
  grpc::ClientContext ctx;
  Prepare(f, &ctx);
  muse::v1::ListModelsResponse resp;
  grpc::Status st = stub.ListModels(&ctx, {}, &resp);
  if (!st.ok()) return Fail(st);
  for (const auto& m : resp.models()) {
    std::printf("%s\tarch=%s context=%lld vocab=%lld images=%s chat_template=%s\n", m.id().c_str(),
                m.architecture().c_str(), static_cast<long long>(m.context_length()),
                static_cast<long long>(m.vocab_size()), m.supports_images() ? "yes" : "no",
                m.has_chat_template() ? "yes" : "no");
  }
  return 0;
}

int Tokenize(const Flags& f, muse::v1::Inference::Stub& stub) {
  grpc::ClientContext ctx;
  Prepare(f, &ctx);
  muse::v1::TokenizeRequest req;
  req.set_prompt(f.prompt);
  req.set_return_tokens(f.tokens);
  muse::v1::TokenizeResponse resp;
  grpc::Status st = stub.Tokenize(&ctx, req, &resp);
  if (!st.ok()) return Fail(st);
  for (int i = 0; i < resp.token_ids_size(); ++i) {
    if (f.tokens) {
      std::printf("%d\t%s\n", resp.token_ids(i), resp.tokens(i).c_str());
    } else {
      std::printf("%s%d", i ? " " : "", resp.token_ids(i));
    }
  }
  if (!f.tokens) std::printf("\n");
  return 0;
}

// The --image and --audio files' bytes, in flag order per kind.
struct Media {
  std::vector<std::string> images, audios;
};

int Generate(const Flags& f, muse::v1::Inference::Stub& stub, const Media& media) {
  muse::v1::GenerateRequest req;
  req.set_prompt(f.prompt);
  for (const auto& b : media.images) req.add_images()->set_image(b);
  for (const auto& b : media.audios) req.add_images()->set_audio(b);
  FillParams(f, &req);
  if (!f.no_stream) return StreamOnce(f, stub, req, nullptr);
  grpc::ClientContext ctx;
  Prepare(f, &ctx);
  muse::v1::GenerateUnaryResponse resp;
  grpc::Status st = stub.GenerateUnary(&ctx, req, &resp);
  if (!st.ok()) return Fail(st);
  for (const auto& c : resp.completions()) {
    if (resp.completions_size() > 1) std::printf("--- sample %d\n", c.index());
    std::printf("%s\n", c.text().c_str());
  }
  return 0;
}

int Chat(const Flags& f, muse::v1::Inference::Stub& stub, Media media) {
  muse::v1::GenerateRequest req;
  FillParams(f, &req);
  auto add = [&](const std::string& role, const std::string& text) {
    auto* m = req.add_messages();
    m->set_role(role);
    m->add_content()->set_text(text);
  };
  if (!f.system.empty()) add("system", f.system);
  std::string line;
  while (std::fprintf(stderr, "> "), std::getline(std::cin, line)) {
    if (line.empty()) continue;
    // --image / --audio parts go with the next user message, before its text (as LLaVA and
    // Qwen2-Audio prompts place them).
    auto* m = req.add_messages();
    m->set_role("user");
    for (const auto& bytes : media.images) m->add_content()->set_image(bytes);
    for (const auto& bytes : media.audios) m->add_content()->set_audio(bytes);
    m->add_content()->set_text(line);
    media = {};
    std::string answer;
    if (int rc = StreamOnce(f, stub, req, &answer); rc != 0) return rc;
    add("assistant", answer);
  }
  return 0;
}

void AddSamplingFlags(CLI::App* cmd, Flags* f) {
  using muse::cli::AtLeast;
  cmd->add_option("--max-tokens", f->max_tokens, "most tokens to generate")->check(AtLeast(1));
  cmd->add_option("--temperature", f->temperature, "0 = greedy (default: the server's)")
      ->check(AtLeast(0.0));
  cmd->add_option("--top-p", f->top_p, "nucleus sampling mass")->check(muse::cli::kTopP);
  cmd->add_option("--top-k", f->top_k, "-1 or 0 = off")->check(AtLeast(-1));
  cmd->add_option("--seed", f->seed, "sampling seed")->check(muse::cli::kUnsigned);
  cmd->add_option("--n", f->n, "samples per prompt")->check(AtLeast(1));
  cmd->add_option("--stop", f->stop, "stop string (repeatable)")->allow_extra_args(false);
  cmd->add_option("--priority", f->priority, "scheduling class")
      ->check(CLI::IsMember({"interactive", "batch"}));
  cmd->add_option("--image", f->images, "image file (repeatable)")
      ->allow_extra_args(false)
      ->check(CLI::ExistingFile);
  cmd->add_option("--audio", f->audios, "audio file: WAV, FLAC, Ogg or MP3 (repeatable)")
      ->allow_extra_args(false)
      ->check(CLI::ExistingFile);
  cmd->add_flag("--ids", f->ids, "print token ids instead of text");
}

}  // namespace

int main(int argc, char** argv) try {
  muse::InitLogging("warn");
  Flags f;
  CLI::App app("Command-line client for muse-server.", "muse");
  muse::cli::ConfigureApp(app);
  app.require_subcommand(1);
  app.fallthrough();  // connection flags also after the command (subcommands inherit this)
  app.add_option("--addr", f.addr, "server HOST:PORT");
  app.add_option("--api-key", f.api_key, "sent as 'authorization: Bearer KEY'")
      ->envname("MUSE_API_KEY");
  CLI::Option* ca =
      app.add_option("--tls-ca", f.tls_ca, "TLS: CA of the server (PEM)")->check(CLI::ExistingFile);
  CLI::Option* cert = app.add_option("--tls-cert", f.tls_cert, "mTLS: client certificate (PEM)")
                          ->check(CLI::ExistingFile)
                          ->needs(ca);
  CLI::Option* key =
      app.add_option("--tls-key", f.tls_key, "mTLS: client key (PEM)")->check(CLI::ExistingFile);
  cert->needs(key);
  key->needs(cert);
  app.add_option("--timeout", f.timeout, "per-RPC deadline in seconds; 0 = none")
      ->check(muse::cli::AtLeast(0.0));

  CLI::App* generate = app.add_subcommand("generate", "complete a raw-text prompt (streamed)");
  generate
      ->add_option(
          "--prompt", f.prompt,
          "prompt text; each <image> takes the next --image, each <|AUDIO|> the next --audio")
      ->required()
      ->check(muse::cli::kNonEmpty);
  AddSamplingFlags(generate, &f);
  generate->add_flag("--no-stream", f.no_stream,
                     "one unary call, print the completions at the end");

  CLI::App* chat = app.add_subcommand("chat", "conversation: one user message per stdin line");
  chat->add_option("--system", f.system, "system message");
  AddSamplingFlags(chat, &f);

  CLI::App* tokenize = app.add_subcommand("tokenize", "token ids of a prompt");
  tokenize->add_option("--prompt", f.prompt, "text to tokenize")
      ->required()
      ->check(muse::cli::kNonEmpty);
  tokenize->add_flag("--tokens", f.tokens, "one 'id<TAB>token' line per token");

  CLI::App* models = app.add_subcommand("models", "the served models");

  if (auto rc = muse::cli::ParseCommandLine(app, argc, argv)) return *rc;

  Media media;
  for (const auto& [paths, out] :
       {std::pair{&f.images, &media.images}, {&f.audios, &media.audios}}) {
    for (const auto& path : *paths) {
      auto bytes = muse::ReadFile(path);
      if (!bytes.ok()) return Fail(bytes.status());
      out->push_back(std::move(*bytes));
    }
  }
  auto channel = Connect(f);
  if (!channel.ok()) return Fail(channel.status());
  auto stub = muse::v1::Inference::NewStub(*channel);
  if (models->parsed()) return Models(f, *stub);
  if (tokenize->parsed()) return Tokenize(f, *stub);
  if (generate->parsed()) return Generate(f, *stub, media);
  return Chat(f, *stub, std::move(media));  // require_subcommand(1): chat is left
} catch (const std::exception& e) {
  std::fprintf(stderr, "muse: %s\n", e.what());
  return 1;
}
