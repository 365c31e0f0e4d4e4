// muse: command-line client for muse-server.
//
//   muse generate --prompt TEXT [--stream] [flags]   stream a completion of raw text
//   muse chat [--system TEXT] [--image PATH] [flags] read lines from stdin, keep the
//                                                    conversation, stream each answer;
//                                                    --image attaches to the next user line
//   muse generate --image PATH --prompt "...<image>..."   raw prompt: each <image> placeholder
//                                                    takes the next --image in order
//   muse tokenize --prompt TEXT [--tokens]
//   muse models
//
// Flags: --addr HOST:PORT (default localhost:50051), --api-key KEY (or $MUSE_API_KEY),
//   --tls-ca PEM [--tls-cert PEM --tls-key PEM], --max-tokens N, --temperature T, --top-p P,
//   --top-k K, --seed S, --n N, --stop STR (repeatable), --priority interactive|batch,
//   --timeout SECONDS, --no-stream (generate: use GenerateUnary), --ids (print token ids).
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/numbers.h"
#include "muse/v1/inference.grpc.pb.h"

namespace {

struct Flags {
  std::string cmd, addr = "localhost:50051", api_key, prompt, system;
  std::string tls_ca, tls_cert, tls_key;
  std::vector<std::string> stop;
  std::vector<std::string> images;  // --image PATH (repeatable)
  int max_tokens = 256, top_k = -2, n = 1;
  double temperature = -1, top_p = -1, timeout = 0;
  long long seed = -1;
  std::string priority;
  bool stream = true, tokens = false, ids = false;
};

int Usage(const std::string& msg) {
  std::fprintf(stderr,
               "muse: %s\nusage: muse generate|chat|tokenize|models [--addr H:P] [--api-key K] "
               "[--prompt TEXT] [--max-tokens N] [--temperature T] [--top-p P] [--top-k K] "
               "[--seed S] [--n N] [--stop S] [--priority interactive|batch] [--timeout SEC] "
               "[--no-stream] [--ids] [--tokens] [--system TEXT] [--image PATH] [--tls-ca PEM [--tls-cert PEM "
               "--tls-key PEM]]\n",
               msg.c_str());
  return 2;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::shared_ptr<grpc::Channel> Connect(const Flags& f) {
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!f.tls_ca.empty()) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = Slurp(f.tls_ca);
    if (!f.tls_cert.empty()) {
      o.pem_cert_chain = Slurp(f.tls_cert);
      o.pem_private_key = Slurp(f.tls_key);
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
  if (f.temperature >= 0) s->set_temperature(static_cast<float>(f.temperature));
  if (f.top_p >= 0) s->set_top_p(static_cast<float>(f.top_p));
  if (f.top_k >= -1) s->set_top_k(f.top_k);
  if (f.seed >= 0) s->set_seed(static_cast<uint64_t>(f.seed));
  if (f.n != 1) s->set_n(f.n);
  r->mutable_stopping()->set_max_tokens(f.max_tokens);
  for (const auto& st : f.stop) r->mutable_stopping()->add_stop(st);
  if (f.priority == "interactive") r->set_priority(muse::v1::PRIORITY_INTERACTIVE);
  if (f.priority == "batch") r->set_priority(muse::v1::PRIORITY_BATCH);
}

int Fail(const grpc::Status& st) {
  std::fprintf(stderr, "\nmuse: error %d: %s\n", static_cast<int>(st.error_code()),
               st.error_message().c_str());
  return 1;
}

// Streams one request; prints text as it arrives; returns the text of sample 0.
int StreamOnce(const Flags& f, muse::v1::Inference::Stub& stub, const muse::v1::GenerateRequest& req,
               std::string* answer) {
  grpc::ClientContext ctx;
  Prepare(f, &ctx);
  auto reader = stub.Generate(&ctx, req);
  muse::v1::GenerateResponse resp;
  while (reader->Read(&resp)) {
    for (const auto& s : resp.samples()) {
      if (s.index() == 0) {
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
      std::fprintf(stderr, "\n[%lld prompt + %lld completion tokens, ttft %.1f ms, total %.1f ms]\n",
                   static_cast<long long>(resp.usage().prompt_tokens()),
                   static_cast<long long>(resp.usage().completion_tokens()), resp.timings().ttft_ms(),
                   resp.timings().total_ms());
    }
  }
  grpc::Status st = reader->Finish();
  return st.ok() ? 0 : Fail(st);
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  if (const char* k = std::getenv("MUSE_API_KEY")) f.api_key = k;
  if (argc < 2) return Usage("missing command");
  f.cmd = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    auto num = [&](auto* dst) {
      std::string v = next();
      bool ok;
      if constexpr (std::is_same_v<std::remove_pointer_t<decltype(dst)>, double>) {
        ok = absl::SimpleAtod(v, dst);
      } else {
        ok = absl::SimpleAtoi(v, dst);
      }
      if (!ok) std::exit(Usage(a + ": bad number '" + v + "'"));
    };
    if (a == "--addr") f.addr = next();
    else if (a == "--api-key") f.api_key = next();
    else if (a == "--prompt") f.prompt = next();
    else if (a == "--system") f.system = next();
    else if (a == "--max-tokens") num(&f.max_tokens);
    else if (a == "--temperature") num(&f.temperature);
    else if (a == "--top-p") num(&f.top_p);
    else if (a == "--top-k") num(&f.top_k);
    else if (a == "--seed") num(&f.seed);
    else if (a == "--n") num(&f.n);
    else if (a == "--timeout") num(&f.timeout);
    else if (a == "--stop") f.stop.push_back(next());
    else if (a == "--image") f.images.push_back(next());
    else if (a == "--priority") f.priority = next();
    else if (a == "--tls-ca") f.tls_ca = next();
    else if (a == "--tls-cert") f.tls_cert = next();
    else if (a == "--tls-key") f.tls_key = next();
    else if (a == "--no-stream") f.stream = false;
    else if (a == "--tokens") f.tokens = true;
    else if (a == "--ids") f.ids = true;
    else return Usage("unknown flag " + a);
  }
  std::vector<std::string> image_bytes;
  for (const auto& path : f.images) {
    if (!std::ifstream(path, std::ios::binary)) return Usage("--image: cannot read " + path);
    image_bytes.push_back(Slurp(path));
  }
  auto stub = muse::v1::Inference::NewStub(Connect(f));

  if (f.cmd == "models") {
    grpc::ClientContext ctx;
    Prepare(f, &ctx);
    muse::v1::ListModelsResponse resp;
    grpc::Status st = stub->ListModels(&ctx, {}, &resp);
    if (!st.ok()) return Fail(st);
    for (const auto& m : resp.models()) {
      std::printf("%s\tarch=%s context=%lld vocab=%lld images=%s chat_template=%s\n", m.id().c_str(),
                  m.architecture().c_str(), static_cast<long long>(m.context_length()),
                  static_cast<long long>(m.vocab_size()), m.supports_images() ? "yes" : "no",
                  m.has_chat_template() ? "yes" : "no");
    }
    return 0;
  }
  if (f.cmd == "tokenize") {
    if (f.prompt.empty()) return Usage("tokenize needs --prompt");
    grpc::ClientContext ctx;
    Prepare(f, &ctx);
    muse::v1::TokenizeRequest req;
    req.set_prompt(f.prompt);
    req.set_return_tokens(f.tokens);
    muse::v1::TokenizeResponse resp;
    grpc::Status st = stub->Tokenize(&ctx, req, &resp);
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
  if (f.cmd == "generate") {
    if (f.prompt.empty()) return Usage("generate needs --prompt");
    muse::v1::GenerateRequest req;
    req.set_prompt(f.prompt);
    for (const auto& b : image_bytes) req.add_images()->set_image(b);
    FillParams(f, &req);
    if (f.stream) return StreamOnce(f, *stub, req, nullptr);
    grpc::ClientContext ctx;
    Prepare(f, &ctx);
    muse::v1::GenerateUnaryResponse resp;
    grpc::Status st = stub->GenerateUnary(&ctx, req, &resp);
    if (!st.ok()) return Fail(st);
    for (const auto& c : resp.completions()) {
      if (resp.completions_size() > 1) std::printf("--- sample %d\n", c.index());
      std::printf("%s\n", c.text().c_str());
    }
    return 0;
  }
  if (f.cmd == "chat") {
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
      // --image parts go with the next user message, before its text (as LLaVA prompts place them).
      auto* m = req.add_messages();
      m->set_role("user");
      for (const auto& bytes : image_bytes) m->add_content()->set_image(bytes);
      m->add_content()->set_text(line);
      image_bytes.clear();
      std::string answer;
      if (int rc = StreamOnce(f, *stub, req, &answer); rc != 0) return rc;
      add("assistant", answer);
    }
    return 0;
  }
  return Usage("unknown command " + f.cmd);
}
