// The real server in-process (real engine, CPU runner, random tiny checkpoint, Llama 3 tokenizer)
// driven through real gRPC stubs on 127.0.0.1.
#include "src/server/server.h"

#include <arpa/inet.h>
#include <grpcpp/generic/generic_stub.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "tests/server/test_util.h"

namespace muse::server {
namespace {

using namespace muse::server::testing;

ServerOptions BaseOptions() {
  ServerOptions o;
  o.model_dir = TinyModelDir();
  o.host = "127.0.0.1";
  o.port = 0;
  o.threads = 1;
  o.num_kv_blocks = 256;
  o.max_num_seqs = 8;
  o.api_keys_file = TinyModelDir() + "/api_keys.json";
  o.metrics_port = 0;
  o.seed = 1;
  return o;
}

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto s = Server::Start(BaseOptions());
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = s->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    stub_ = Stub(server_->port());
  }
  // Every test leaves the engine idle with no KV referenced.
  void TearDown() override {
    EXPECT_TRUE(WaitForIdleEngine(*server_))
        << "kv_blocks_used=" << server_->EngineStats().kv_blocks_used;
  }

  grpc::Status Unary(const v1::GenerateRequest& req, v1::GenerateUnaryResponse* resp,
                     const std::string& key = "key-a") {
    grpc::ClientContext ctx;
    if (!key.empty()) ctx.AddMetadata("authorization", "Bearer " + key);
    return stub_->GenerateUnary(&ctx, req, resp);
  }

  static Server* server_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};
Server* ServerTest::server_ = nullptr;

TEST_F(ServerTest, HealthIsServingAndModelInfo) {
  auto h = HealthStub(server_->port());
  EXPECT_EQ(HealthStatus(*h), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(HealthStatus(*h, "muse.v1.Inference"), grpc::health::v1::HealthCheckResponse::SERVING);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer key-a");
  v1::ModelInfoResponse info;
  ASSERT_TRUE(stub_->ModelInfo(&ctx, {}, &info).ok());
  EXPECT_EQ(info.vocab_size(), 128256);
  EXPECT_EQ(info.context_length(), 1024);
  EXPECT_TRUE(info.has_chat_template());
  EXPECT_FALSE(info.supports_images());
  grpc::ClientContext ctx2;
  ctx2.AddMetadata("authorization", "Bearer key-a");
  v1::ListModelsResponse list;
  ASSERT_TRUE(stub_->ListModels(&ctx2, {}, &list).ok());
  ASSERT_EQ(list.models_size(), 1);
  EXPECT_EQ(list.models(0).id(), info.id());
}

TEST_F(ServerTest, TokenizeMatchesLlama3) {
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer key-a");
  v1::TokenizeRequest req;
  req.set_prompt("Hello world");
  req.set_return_tokens(true);
  v1::TokenizeResponse resp;
  ASSERT_TRUE(stub_->Tokenize(&ctx, req, &resp).ok());
  // [<|begin_of_text|> when the tokenizer.json post-processor adds it] Hello Ġworld
  ASSERT_GE(resp.token_ids_size(), 2);
  const int n = resp.token_ids_size();
  if (n == 3) {
    EXPECT_EQ(resp.token_ids(0), 128000);
  }
  EXPECT_EQ(resp.token_ids(n - 2), 9906);
  EXPECT_EQ(resp.token_ids(n - 1), 1917);
  EXPECT_EQ(resp.tokens(n - 1), "\xC4\xA0world");
  EXPECT_EQ(resp.max_model_len(), 1024);
}

TEST_F(ServerTest, StreamingTextEqualsUnaryForGreedy) {
  const auto req = GreedyPrompt("The quick brown fox", 24);
  StreamResult s = RunStream(*stub_, req);
  ASSERT_TRUE(s.status.ok()) << s.status.error_message();
  v1::GenerateUnaryResponse u;
  ASSERT_TRUE(Unary(req, &u).ok());
  ASSERT_EQ(u.completions_size(), 1);
  EXPECT_EQ(std::vector<int32_t>(u.completions(0).token_ids().begin(),
                                 u.completions(0).token_ids().end()),
            s.ids);
  EXPECT_EQ(u.completions(0).text(), s.text);
  EXPECT_EQ(s.ids.size(), 24u);
  EXPECT_FALSE(s.text.empty());
  EXPECT_TRUE(s.last.finished());
  EXPECT_EQ(s.last.samples(0).finish_reason(), v1::FINISH_REASON_LENGTH);
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer key-a");
    v1::TokenizeRequest tr;
    tr.set_prompt("The quick brown fox");
    v1::TokenizeResponse tok;
    ASSERT_TRUE(stub_->Tokenize(&ctx, tr, &tok).ok());
    EXPECT_EQ(s.last.usage().prompt_tokens(), tok.token_ids_size());
  }
  EXPECT_EQ(s.last.usage().completion_tokens(), 24);
  EXPECT_GT(s.last.timings().total_ms(), 0);
  EXPECT_GE(s.last.timings().total_ms(), s.last.timings().ttft_ms());
  EXPECT_EQ(u.usage().completion_tokens(), 24);
}

TEST_F(ServerTest, TwoSamplesAndLogprobs) {
  v1::GenerateRequest req = GreedyPrompt("Once upon a time", 8);
  req.mutable_sampling()->set_temperature(1.0f);
  req.mutable_sampling()->set_seed(42);
  req.mutable_sampling()->set_n(2);
  req.mutable_sampling()->set_logprobs(true);
  req.mutable_sampling()->set_top_logprobs(3);
  req.set_request_id("client-7");
  v1::GenerateUnaryResponse u;
  ASSERT_TRUE(Unary(req, &u).ok());
  EXPECT_EQ(u.request_id(), "client-7");
  ASSERT_EQ(u.completions_size(), 2);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(u.completions(i).index(), i);
    EXPECT_EQ(u.completions(i).token_ids_size(), 8);
    ASSERT_EQ(u.completions(i).logprobs_size(), 8);
    EXPECT_EQ(u.completions(i).logprobs(0).top_size(), 3);
    EXPECT_EQ(u.completions(i).logprobs(0).token_id(), u.completions(i).token_ids(0));
  }
  EXPECT_EQ(u.usage().completion_tokens(), 16);
  // Streaming with the same seed gives the same samples.
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer key-a");
  auto reader = stub_->Generate(&ctx, req);
  std::map<int, std::vector<int32_t>> ids;
  v1::GenerateResponse resp;
  while (reader->Read(&resp)) {
    for (const auto& s : resp.samples())
      ids[s.index()].insert(ids[s.index()].end(), s.token_ids().begin(), s.token_ids().end());
  }
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_EQ(ids.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(ids[i], std::vector<int32_t>(u.completions(i).token_ids().begin(),
                                           u.completions(i).token_ids().end()));
  }
}

TEST_F(ServerTest, ChatMessagesUseTheTemplate) {
  v1::GenerateRequest req;
  auto* m = req.add_messages();
  m->set_role("user");
  m->add_content()->set_text("Hi there");
  req.mutable_sampling()->set_temperature(0);
  req.mutable_stopping()->set_max_tokens(4);
  req.mutable_stopping()->set_ignore_eos(true);
  v1::GenerateUnaryResponse u;
  ASSERT_TRUE(Unary(req, &u).ok());
  // <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|> + assistant
  // header
  EXPECT_GT(u.usage().prompt_tokens(), 10);
  EXPECT_EQ(u.completions(0).token_ids_size(), 4);
}

struct BadCase {
  std::string name;
  std::function<void(v1::GenerateRequest*)> mutate;
  std::string field;  // the message must start with it
  grpc::StatusCode code = grpc::StatusCode::INVALID_ARGUMENT;
};

std::string Png() {
  std::string p("\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89",
                33);
  return p;
}

TEST_F(ServerTest, EveryInvalidArgumentNamesTheField) {
  std::vector<BadCase> cases = {
      {"empty", [](auto* r) { r->clear_prompt(); }, "input"},
      {"two inputs", [](auto* r) { r->add_prompt_token_ids(5); }, "input"},
      {"bad utf8", [](auto* r) { r->set_prompt(std::string("abc\xff\xfe", 5)); },
       "prompt: invalid UTF-8"},
      {"bad utf8 in chat",
       [](auto* r) {
         r->clear_prompt();
         auto* m = r->add_messages();
         m->set_role("user");
         m->add_content()->set_text("ok");
         m->add_content()->set_text(std::string("\xc3", 1));
       },
       "messages[0].content[1].text: invalid UTF-8"},
      {"token id",
       [](auto* r) {
         r->clear_prompt();
         r->add_prompt_token_ids(1);
         r->add_prompt_token_ids(200000);
       },
       "prompt_token_ids[1]"},
      {"too long",
       [](auto* r) {
         r->clear_prompt();
         for (int i = 0; i < 1100; ++i) r->add_prompt_token_ids(100);
       },
       "prompt_token_ids"},
      {"temperature", [](auto* r) { r->mutable_sampling()->set_temperature(-1); },
       "sampling.temperature"},
      {"top_p", [](auto* r) { r->mutable_sampling()->set_top_p(0); }, "sampling.top_p"},
      {"top_k", [](auto* r) { r->mutable_sampling()->set_top_k(-5); }, "sampling.top_k"},
      {"min_p", [](auto* r) { r->mutable_sampling()->set_min_p(2); }, "sampling.min_p"},
      {"n", [](auto* r) { r->mutable_sampling()->set_n(0); }, "sampling.n"},
      {"presence", [](auto* r) { r->mutable_sampling()->set_presence_penalty(3); },
       "sampling.presence_penalty"},
      {"repetition", [](auto* r) { r->mutable_sampling()->set_repetition_penalty(0); },
       "sampling.repetition_penalty"},
      {"logit_bias", [](auto* r) { (*r->mutable_sampling()->mutable_logit_bias())[999999] = 1; },
       "sampling.logit_bias[999999]"},
      {"top_logprobs",
       [](auto* r) {
         r->mutable_sampling()->set_logprobs(true);
         r->mutable_sampling()->set_top_logprobs(50);
       },
       "sampling.top_logprobs"},
      {"max_tokens", [](auto* r) { r->mutable_stopping()->set_max_tokens(0); },
       "stopping.max_tokens"},
      {"max_tokens ctx", [](auto* r) { r->mutable_stopping()->set_max_tokens(5000); },
       "stopping.max_tokens"},
      {"min_tokens", [](auto* r) { r->mutable_stopping()->set_min_tokens(-1); },
       "stopping.min_tokens"},
      {"stop", [](auto* r) { r->mutable_stopping()->add_stop(""); }, "stopping.stop[0]"},
      {"stop ids", [](auto* r) { r->mutable_stopping()->add_stop_token_ids(-3); },
       "stopping.stop_token_ids[0]"},
      {"role",
       [](auto* r) {
         r->clear_prompt();
         auto* m = r->add_messages();
         m->set_role("bot");
         m->add_content()->set_text("x");
       },
       "messages[0].role"},
      {"bad image",
       [](auto* r) {
         r->clear_prompt();
         auto* m = r->add_messages();
         m->set_role("user");
         m->add_content()->set_text("what is this?");
         m->add_content()->set_image("not an image at all");
       },
       "messages[0].content[1].image: undecodable"},
      {"image without vision",
       [](auto* r) {
         r->clear_prompt();
         auto* m = r->add_messages();
         m->set_role("user");
         m->add_content()->set_image(Png());
       },
       "messages[0].content[0].image: model "},
      {"image url",
       [](auto* r) {
         r->clear_prompt();
         auto* m = r->add_messages();
         m->set_role("user");
         m->add_content()->set_image_url("data:image/png;base64,%%%");
       },
       "messages[0].content[0].image_url"},
      {"deep tool parameters",  // 200,000 levels: used to overflow the stack when copied
       [](auto* r) {
         r->clear_prompt();
         auto* m = r->add_messages();
         m->set_role("user");
         m->add_content()->set_text("hi");
         auto* t = r->add_tools();
         t->set_name("f");
         t->set_parameters_json(std::string(200000, '[') + std::string(200000, ']'));
       },
       "tools[0].parameters_json: nests deeper than 64"},
      {"model", [](auto* r) { r->set_model("gpt-17"); }, "model", grpc::StatusCode::NOT_FOUND},
      {"response_format",
       [](auto* r) {
         r->mutable_response_format()->set_json_schema(R"({"type": "object", "not": {}})");
       },
       "response_format.json_schema: "},
  };
  for (const auto& c : cases) {
    v1::GenerateRequest req = GreedyPrompt("hello", 4);
    c.mutate(&req);
    v1::GenerateUnaryResponse u;
    grpc::Status st = Unary(req, &u);
    EXPECT_EQ(st.error_code(), c.code) << c.name << ": " << st.error_message();
    EXPECT_EQ(st.error_message().rfind(c.field, 0), 0u) << c.name << ": " << st.error_message();
    // Streaming answers the same.
    StreamResult s = RunStream(*stub_, req);
    EXPECT_EQ(s.status.error_code(), c.code) << c.name;
    EXPECT_EQ(s.messages, 0) << c.name;
  }
  grpc::Status st;
  v1::GenerateUnaryResponse u;
  v1::GenerateRequest img = GreedyPrompt("", 4);
  auto* m = img.add_messages();
  m->set_role("user");
  m->add_content()->set_image(Png());
  st = Unary(img, &u);
  EXPECT_NE(st.error_message().find("does not accept images"), std::string::npos)
      << st.error_message();
}

TEST_F(ServerTest, BadRequestsLeaveConcurrentRequestsUnaffected) {
  const auto req = GreedyPrompt("A long story about a dragon", 48);
  StreamResult alone = RunStream(*stub_, req);
  ASSERT_TRUE(alone.status.ok());
  std::atomic<bool> done{false};
  std::thread bad([&] {
    auto stub = Stub(server_->port());
    int i = 0;
    while (!done) {
      v1::GenerateRequest r = GreedyPrompt("x", 4);
      if (i++ % 2)
        r.mutable_sampling()->set_top_p(7);
      else
        r.mutable_stopping()->add_stop_token_ids(-1);
      v1::GenerateUnaryResponse u;
      grpc::ClientContext ctx;
      ctx.AddMetadata("authorization", "Bearer key-a");
      EXPECT_EQ(stub->GenerateUnary(&ctx, r, &u).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    }
  });
  StreamResult s = RunStream(*stub_, req);
  done = true;
  bad.join();
  ASSERT_TRUE(s.status.ok());
  EXPECT_EQ(s.ids, alone.ids);
  EXPECT_EQ(s.text, alone.text);
}

TEST_F(ServerTest, CancelMidStreamFreesKvBlocks) {
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer key-a");
  auto reader = stub_->Generate(&ctx, GreedyPrompt("Count forever:", 900));
  v1::GenerateResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  ASSERT_TRUE(reader->Read(&resp));
  EXPECT_GT(server_->EngineStats().kv_blocks_used, 0);
  ctx.TryCancel();
  while (reader->Read(&resp)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(
      WaitFor([] { return server_->EngineStats().kv_blocks_used == 0; }, std::chrono::seconds(5)));
  EXPECT_GE(server_->EngineStats().requests_aborted, 1);
}

TEST_F(ServerTest, DeadlineExceeded) {
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer key-a");
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(150));
  v1::GenerateUnaryResponse u;
  grpc::Status st = stub_->GenerateUnary(&ctx, GreedyPrompt("Never ending", 900), &u);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  StreamResult s;
  {
    grpc::ClientContext c2;
    c2.AddMetadata("authorization", "Bearer key-a");
    c2.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(150));
    auto reader = stub_->Generate(&c2, GreedyPrompt("Never ending", 900));
    v1::GenerateResponse resp;
    while (reader->Read(&resp)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  }
}

// Soak regression (issue 15): a call that ends -- deadline or client cancel -- before its request
// message arrives still reaches the raw-method handler, with no buffer. It was counted (and
// answered) INVALID_ARGUMENT "request: unreadable message"; it is CANCELLED / DEADLINE_EXCEEDED.
TEST_F(ServerTest, CallEndedBeforeItsRequestArrivedIsNotInvalidArgument) {
  auto count = [](const std::string& code) {
    const std::string body = HttpGet(server_->metrics_port(), "/metrics");
    const std::string key = "muse_requests_total{method=\"Generate\",code=\"" + code + "\"} ";
    const size_t at = body.find(key);
    return at == std::string::npos ? 0 : std::stoll(body.substr(at + key.size()));
  };
  const int64_t invalid0 = count("INVALID_ARGUMENT");
  const int64_t ended0 = count("CANCELLED") + count("DEADLINE_EXCEEDED");
  grpc::GenericStub generic(grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                                grpc::InsecureChannelCredentials()));
  grpc::CompletionQueue cq;
  for (const bool use_deadline : {true, false}) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer key-a");
    if (use_deadline) {
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
    }
    // Headers only: the request message is never written.
    auto call = generic.PrepareCall(&ctx, "/muse.v1.Inference/Generate", &cq);
    void* tag = nullptr;
    bool ok = false;
    call->StartCall(reinterpret_cast<void*>(1));
    ASSERT_TRUE(cq.Next(&tag, &ok));
    if (!use_deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      ctx.TryCancel();
    }
    grpc::Status st;
    call->Finish(&st, reinterpret_cast<void*>(2));
    while (cq.Next(&tag, &ok) && tag != reinterpret_cast<void*>(2)) {
    }
    EXPECT_EQ(st.error_code(),
              use_deadline ? grpc::StatusCode::DEADLINE_EXCEEDED : grpc::StatusCode::CANCELLED);
  }
  cq.Shutdown();
  // Both calls reached the server (their headers did) and are counted once OnDone has run.
  EXPECT_TRUE(WaitFor([&] { return count("CANCELLED") + count("DEADLINE_EXCEEDED") == ended0 + 2; },
                      std::chrono::seconds(5)));
  EXPECT_EQ(count("INVALID_ARGUMENT"), invalid0);
}

TEST_F(ServerTest, Auth) {
  const auto req = GreedyPrompt("hi", 2);
  v1::GenerateUnaryResponse u;
  EXPECT_EQ(Unary(req, &u, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Unary(req, &u, "nope").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(RunStream(*stub_, req, "").status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  {
    grpc::ClientContext ctx;  // every RPC is authenticated
    v1::ListModelsResponse l;
    EXPECT_EQ(stub_->ListModels(&ctx, {}, &l).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  // beta may only ask for batch.
  EXPECT_TRUE(Unary(req, &u, "key-b").ok());
  v1::GenerateRequest hi = req;
  hi.set_priority(v1::PRIORITY_INTERACTIVE);
  grpc::Status st = Unary(hi, &u, "key-b");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(st.error_message().rfind("priority", 0), 0u);
  // gamma: 2 requests per minute.
  EXPECT_TRUE(Unary(req, &u, "key-c").ok());
  EXPECT_TRUE(Unary(req, &u, "key-c").ok());
  EXPECT_EQ(Unary(req, &u, "key-c").error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(ServerTest, SlowReaderDoesNotStallOtherStreams) {
  // A: a large stream (logprobs make messages big enough to fill HTTP/2 flow-control windows)
  // whose reader stops after the first message.
  v1::GenerateRequest big = GreedyPrompt("Slow reader", 600);
  big.mutable_sampling()->set_logprobs(true);
  big.mutable_sampling()->set_top_logprobs(20);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer key-a");
  auto reader = stub_->Generate(&ctx, big);
  v1::GenerateResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  int64_t a_tokens = resp.samples_size() ? resp.samples(0).token_ids_size() : 0;
  // B runs to completion while A is not being read.
  StreamResult b = RunStream(*stub_, GreedyPrompt("Fast reader", 40));
  ASSERT_TRUE(b.status.ok());
  EXPECT_EQ(b.ids.size(), 40u);
  // The engine finishes A too: its output waits in A's own OutputStream.
  EXPECT_TRUE(
      WaitFor([] { return server_->EngineStats().num_requests == 0; }, std::chrono::seconds(30)));
  while (reader->Read(&resp)) {
    for (const auto& s : resp.samples()) a_tokens += s.token_ids_size();
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(a_tokens, 600);
}

TEST_F(ServerTest, MetricsEndpoint) {
  v1::GenerateUnaryResponse u;
  ASSERT_TRUE(Unary(GreedyPrompt("metrics", 3), &u).ok());
  // An RPC is counted in OnDone, which may run just after the client has its response.
  std::string body;
  EXPECT_TRUE(WaitFor(
      [&] {
        body = HttpGet(server_->metrics_port(), "/metrics");
        return body.find("muse_requests_total{method=\"GenerateUnary\",code=\"OK\"}") !=
               std::string::npos;
      },
      std::chrono::seconds(5)));
  EXPECT_NE(body.find("HTTP/1.1 200"), std::string::npos);
  for (const char* want :
       {"muse_requests_total{method=\"GenerateUnary\",code=\"OK\"}", "muse_generation_tokens_total",
        "muse_prompt_tokens_total", "muse_time_to_first_token_seconds_bucket",
        "muse_time_per_output_token_seconds", "muse_queue_time_seconds_count",
        "muse_e2e_request_latency_seconds_sum", "muse_num_requests_running",
        "muse_num_requests_waiting", "muse_kv_cache_usage_ratio", "muse_prefix_cache_hit_rate",
        "muse_num_preemptions_total", "muse_engine_step_seconds_bucket{le=\"0.001\"}",
        "muse_engine_step_seconds_count", "muse_tenant_requests_total{tenant=\"alpha\"}",
        "muse_tenant_completion_tokens_total{tenant=\"alpha\"}"}) {
    EXPECT_NE(body.find(want), std::string::npos) << want;
  }
  // One engine snapshot feeds both: every step that ran a batch is in the step-time histogram.
  auto value = [&](const std::string& name) {
    const size_t at = body.find("\n" + name + " ");
    EXPECT_NE(at, std::string::npos) << name;
    return at == std::string::npos ? -1.0 : std::stod(body.substr(at + name.size() + 2));
  };
  EXPECT_GT(value("muse_engine_steps_total"), 0);
  EXPECT_EQ(value("muse_engine_step_seconds_count"), value("muse_engine_steps_total"));
  EXPECT_GT(value("muse_engine_step_seconds_sum"), 0);
  const std::string health = HttpGet(server_->metrics_port(), "/health");
  EXPECT_NE(health.find("200 OK"), std::string::npos);
  EXPECT_NE(health.find("SERVING"), std::string::npos);
}

// Separate servers: their own limits and lifecycle.
TEST(ServerLifecycleTest, QueueFullIsResourceExhausted) {
  ServerOptions o = BaseOptions();
  o.metrics_port = -1;
  o.max_num_seqs = 1;
  o.max_waiting = 1;
  auto s = Server::Start(o);
  ASSERT_TRUE(s.ok()) << s.status();
  auto stub = Stub((*s)->port());
  grpc::ClientContext ca, cb;
  ca.AddMetadata("authorization", "Bearer key-a");
  cb.AddMetadata("authorization", "Bearer key-a");
  auto ra = stub->Generate(&ca, GreedyPrompt("running", 900));
  v1::GenerateResponse resp;
  ASSERT_TRUE(ra->Read(&resp));  // A holds the only sequence slot
  auto rb = stub->Generate(&cb, GreedyPrompt("waiting", 900));
  ASSERT_TRUE(WaitFor([&] { return (*s)->EngineStats().num_queued_requests == 1; },
                      std::chrono::seconds(5)));
  StreamResult c = RunStream(*stub, GreedyPrompt("rejected", 4));
  EXPECT_EQ(c.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << c.status.error_message();
  ca.TryCancel();
  cb.TryCancel();
  while (ra->Read(&resp)) {
  }
  while (rb->Read(&resp)) {
  }
  ra->Finish();
  rb->Finish();
  EXPECT_TRUE(
      WaitFor([&] { return (*s)->EngineStats().kv_blocks_used == 0; }, std::chrono::seconds(5)));
}

TEST(ServerLifecycleTest, DrainFinishesInFlightAndRejectsNew) {
  ServerOptions o = BaseOptions();
  auto s = Server::Start(o);
  ASSERT_TRUE(s.ok()) << s.status();
  Server* server = s->get();
  auto stub = Stub(server->port());
  auto health = HealthStub(server->port());
  EXPECT_EQ(HealthStatus(*health), grpc::health::v1::HealthCheckResponse::SERVING);

  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer key-a");
  auto reader = stub->Generate(&ctx, GreedyPrompt("In flight during drain", 200));
  v1::GenerateResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  int64_t tokens = resp.samples(0).token_ids_size();

  std::thread drain([&] { server->Drain(absl::Seconds(30)); });
  EXPECT_TRUE(WaitFor(
      [&] { return HealthStatus(*health) != grpc::health::v1::HealthCheckResponse::SERVING; },
      std::chrono::seconds(5)));
  v1::GenerateUnaryResponse u;
  grpc::ClientContext c2;
  c2.AddMetadata("authorization", "Bearer key-a");
  grpc::Status st = stub->GenerateUnary(&c2, GreedyPrompt("new", 2), &u);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();

  while (reader->Read(&resp)) {
    for (const auto& smp : resp.samples()) tokens += smp.token_ids_size();
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(tokens, 200);
  drain.join();
}

}  // namespace
}  // namespace muse::server
