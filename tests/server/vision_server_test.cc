// Images in, end to end: the real server in-process on a tiny LLaVA checkpoint written by
// muse-make-model (Llama 3 tokenizer + "<image>"), real gRPC stubs, the real vision tower.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <regex>
#include <thread>

#include "absl/strings/escaping.h"
#include "src/server/server.h"
#include "tests/server/test_util.h"

namespace muse::server {
namespace {

using namespace muse::server::testing;

// Per encoder batch, so a test can cancel mid-encode. Wide enough that, on a loaded 2-core CI box,
// the first request reaches the encoder before the followers sent delay / 3 later, and they all
// arrive within its batch (150 ms failed once in ~8 suite runs under ctest -j2).
constexpr int kEncodeDelayMs = 400;

class VisionServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ServerOptions o;
    o.model_dir = LlavaModelDir();
    o.host = "127.0.0.1";
    o.port = 0;
    o.threads = 1;
    o.num_kv_blocks = 256;
    o.max_num_seqs = 8;
    o.no_auth = true;
    o.metrics_port = 0;
    o.seed = 1;
    o.max_image_bytes = 64 << 10;
    o.max_image_pixels = 512 * 512;
    o.image_encode_delay_for_testing = absl::Milliseconds(kEncodeDelayMs);
    auto s = Server::Start(o);
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
  void TearDown() override {
    EXPECT_TRUE(WaitForIdleEngine(*server_))
        << "kv_blocks_used=" << server_->EngineStats().kv_blocks_used;
  }

  static int64_t Metric(const std::string& name) {
    const std::string text = HttpGet(server_->metrics_port(), "/metrics");
    std::smatch m;
    if (!std::regex_search(text, m, std::regex("\n" + name + " ([0-9]+)"))) return -1;
    return std::stoll(m[1]);
  }

  static v1::GenerateRequest Chat(const std::string& text, const std::vector<std::string>& images,
                                  int max_tokens = 8) {
    v1::GenerateRequest r = GreedyPrompt("", max_tokens);
    auto* m = r.add_messages();
    m->set_role("user");
    for (const auto& im : images) m->add_content()->set_image(im);
    m->add_content()->set_text(text);
    return r;
  }

  static Server* server_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};
Server* VisionServerTest::server_ = nullptr;

TEST_F(VisionServerTest, ModelInfoSupportsImages) {
  grpc::ClientContext ctx;
  v1::ModelInfoResponse info;
  ASSERT_TRUE(stub_->ModelInfo(&ctx, {}, &info).ok());
  EXPECT_TRUE(info.supports_images());
  EXPECT_EQ(info.vocab_size(), 128257);  // Llama 3 + "<image>"
  EXPECT_EQ(info.image_token_id(), 128256);
  EXPECT_EQ(info.image_token(), "<image>");
  EXPECT_EQ(info.num_image_tokens(), 16);
}

TEST_F(VisionServerTest, ImageRequestStreamsAndCacheHitsReuseKv) {
  const std::string img = PatternPng(40, 30, 1);
  const auto req = Chat("What is in this picture?", {img}, 12);
  const int64_t hits0 = Metric("muse_encoder_cache_hits_total");
  const int64_t encoded0 = Metric("muse_images_encoded_total");
  StreamResult a = RunStream(*stub_, req);
  ASSERT_TRUE(a.status.ok()) << a.status.error_message();
  EXPECT_EQ(a.ids.size(), 12u);
  EXPECT_TRUE(a.last.finished());
  // Template tokens + 16 image rows for the one <image> placeholder.
  EXPECT_GT(a.last.usage().prompt_tokens(), 16);
  EXPECT_EQ(Metric("muse_images_encoded_total"), encoded0 + 1);

  StreamResult b = RunStream(*stub_, req);
  ASSERT_TRUE(b.status.ok()) << b.status.error_message();
  EXPECT_EQ(b.ids, a.ids);
  EXPECT_GT(b.last.usage().cached_tokens(), 0);  // prefix cache keyed by the image digest
  EXPECT_EQ(Metric("muse_encoder_cache_hits_total"), hits0 + 1);
  EXPECT_EQ(Metric("muse_images_encoded_total"), encoded0 + 1);  // not encoded again
}

// A new image and a new response format: the gRPC request compiles on the compile pool first, then
// goes from there to the image encoder, then to the engine.
TEST_F(VisionServerTest, NewSchemaAndNewImageCompileThenEncode) {
  const int64_t encoded0 = Metric("muse_images_encoded_total");
  const int64_t misses0 = Metric("muse_grammar_cache_misses_total");
  v1::GenerateRequest req = Chat("Which colour?", {PatternPng(36, 28, 9)}, 40);
  req.mutable_response_format()->set_json_schema(
      R"({"type": "object", "properties": {"colour": {"enum": ["red", "teal", "ochre"]}},
          "required": ["colour"], "additionalProperties": false})");
  StreamResult r = RunStream(*stub_, req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_TRUE(r.text == R"({"colour":"red"})" || r.text == R"({"colour":"teal"})" ||
              r.text == R"({"colour":"ochre"})")
      << r.text;
  EXPECT_EQ(r.last.samples(0).finish_reason(), v1::FINISH_REASON_STOP);
  EXPECT_GT(r.last.usage().prompt_tokens(), 16);  // the image's rows are in the prompt
  EXPECT_EQ(Metric("muse_images_encoded_total"), encoded0 + 1);
  EXPECT_EQ(Metric("muse_grammar_cache_misses_total"), misses0 + 1);
}

TEST_F(VisionServerTest, DifferentImagesGiveDifferentOutputs) {
  const auto a = RunStream(*stub_, Chat("Describe it.", {PatternPng(32, 32, 2)}, 16));
  const auto b = RunStream(
      *stub_, Chat("Describe it.", {EncodePng(32, 32, [](int, int, int) { return 255; })}, 16));
  ASSERT_TRUE(a.status.ok() && b.status.ok())
      << a.status.error_message() << b.status.error_message();
  EXPECT_NE(a.ids, b.ids);
  // Same placeholder tokens, different images: the second must not reuse the first's image KV.
  EXPECT_LT(b.last.usage().cached_tokens(), b.last.usage().prompt_tokens() - 16);
}

TEST_F(VisionServerTest, RawPromptPlaceholdersTakeImagesInOrder) {
  v1::GenerateRequest r = GreedyPrompt("First <image> then <image>, compare them:", 6);
  r.add_images()->set_image(PatternPng(20, 20, 3));
  r.add_images()->set_image_url("data:image/png;base64," +
                                absl::Base64Escape(PatternPng(24, 16, 4)));
  v1::GenerateUnaryResponse u;
  grpc::ClientContext ctx;
  grpc::Status st = stub_->GenerateUnary(&ctx, r, &u);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(u.completions_size(), 1);
  EXPECT_EQ(u.completions(0).token_ids_size(), 6);
  // Swapping the images changes the answer's input (different prefix-cache keys, no error).
  v1::GenerateRequest swapped = r;
  swapped.mutable_images()->SwapElements(0, 1);
  StreamResult s = RunStream(*stub_, swapped);
  ASSERT_TRUE(s.status.ok()) << s.status.error_message();
  EXPECT_LT(s.last.usage().cached_tokens(), 16);  // differs already in the first image
}

TEST_F(VisionServerTest, ImageRequestBatchedWithTextRequestsGivesSameTokens) {
  const auto req = Chat("Tell me about this image in detail.", {PatternPng(36, 28, 5)}, 24);
  StreamResult alone = RunStream(*stub_, req);
  ASSERT_TRUE(alone.status.ok()) << alone.status.error_message();
  std::vector<std::thread> text;
  std::atomic<int> text_ok{0};
  for (int i = 0; i < 3; ++i) {
    text.emplace_back([&, i] {
      auto stub = Stub(server_->port());
      if (RunStream(*stub, GreedyPrompt("Some unrelated text number " + std::to_string(i), 32))
              .status.ok())
        ++text_ok;
    });
  }
  StreamResult batched = RunStream(*stub_, req);
  for (auto& t : text) t.join();
  ASSERT_TRUE(batched.status.ok()) << batched.status.error_message();
  EXPECT_EQ(batched.ids, alone.ids);
  EXPECT_EQ(text_ok.load(), 3);
}

TEST_F(VisionServerTest, EveryBadImageIsInvalidArgumentNamingTheField) {
  const std::string good = PatternPng(16, 16, 6);
  std::string corrupt = good;
  corrupt[corrupt.size() / 2] ^= 0x5A;  // IDAT CRC / zlib data broken
  const std::string truncated = good.substr(0, good.size() / 2);
  const std::string zero = EncodePng(0, 4, [](int, int, int) { return 0; });
  const std::string too_many_pixels =
      EncodePng(600, 600, [](int, int, int) { return 7; });  // > 512*512
  std::string too_big =
      EncodePng(150, 150, [](int x, int y, int c) { return (x * 31 + y * 17 + c) & 0xFF; });
  ASSERT_GT(too_big.size(), 64u << 10);
  struct Case {
    std::string name;
    v1::GenerateRequest req;
    std::string field;
  };
  std::vector<Case> cases = {
      {"corrupt", Chat("x", {corrupt}), "messages[0].content[0].image: "},
      {"truncated", Chat("x", {truncated}), "messages[0].content[0].image: "},
      {"zero-size", Chat("x", {zero}), "messages[0].content[0].image: "},
      {"empty", Chat("x", {std::string()}), "messages[0].content[0].image: "},
      {"not an image", Chat("x", {"GIF89a not supported"}), "messages[0].content[0].image: "},
      {"pixels", Chat("x", {too_many_pixels}), "messages[0].content[0].image: "},
      {"bytes", Chat("x", {too_big}), "messages[0].content[0].image: "},
      {"second image", Chat("x", {good, truncated}), "messages[0].content[1].image: "},
      {"placeholder typed in text", Chat("<image> and", {good}), "messages: "},
  };
  {
    v1::GenerateRequest r = GreedyPrompt("", 4);
    auto* m = r.add_messages();
    m->set_role("user");
    m->add_content()->set_text("look");
    m->add_content()->set_image_url("data:image/png;base64,@@not-base64@@");
    cases.push_back({"bad base64", r, "messages[0].content[1].image_url: "});
    m->mutable_content(1)->set_image_url("https://example.com/cat.png");
    cases.push_back({"remote url", r, "messages[0].content[1].image_url: "});
  }
  {
    v1::GenerateRequest r = GreedyPrompt("two <image> <image>", 4);
    r.add_images()->set_image(good);
    cases.push_back({"raw count mismatch", r, "prompt: "});
    v1::GenerateRequest r2 = GreedyPrompt("no placeholder", 4);
    r2.add_images()->set_image(good);
    cases.push_back({"raw no placeholder", r2, "prompt: "});
    v1::GenerateRequest r3 = GreedyPrompt("", 4);
    r3.add_prompt_token_ids(128000);
    r3.add_prompt_token_ids(128256);
    cases.push_back({"token ids placeholder without image", r3, "prompt_token_ids: "});
    v1::GenerateRequest r4 = GreedyPrompt("<image>", 4);
    r4.add_images()->set_text("not an image");
    cases.push_back({"text part in images", r4, "images[0]: "});
    v1::GenerateRequest r5 = GreedyPrompt("<image>", 4);
    r5.add_images()->set_image(corrupt);
    cases.push_back({"raw corrupt", r5, "images[0].image: "});
  }

  // A good image request runs alongside all of them, unaffected.
  const auto good_req = Chat("A good request", {PatternPng(30, 30, 7)}, 24);
  StreamResult alone = RunStream(*stub_, good_req);
  ASSERT_TRUE(alone.status.ok());
  StreamResult concurrent;
  std::thread t([&] {
    auto stub = Stub(server_->port());
    concurrent = RunStream(*stub, good_req);
  });
  for (const auto& c : cases) {
    v1::GenerateUnaryResponse u;
    grpc::ClientContext ctx;
    grpc::Status st = stub_->GenerateUnary(&ctx, c.req, &u);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.name << ": " << st.error_message();
    EXPECT_EQ(st.error_message().rfind(c.field, 0), 0u) << c.name << ": " << st.error_message();
    StreamResult s = RunStream(*stub_, c.req);
    EXPECT_EQ(s.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.name;
    EXPECT_EQ(s.messages, 0) << c.name;
  }
  t.join();
  ASSERT_TRUE(concurrent.status.ok()) << concurrent.status.error_message();
  EXPECT_EQ(concurrent.ids, alone.ids);
}

TEST_F(VisionServerTest, CancelWhileTheImageIsBeingEncoded) {
  const int64_t encoded0 = Metric("muse_images_encoded_total");
  for (bool unary : {false, true}) {
    const auto req = Chat("cancel me", {PatternPng(33, 21, unary ? 9 : 8)}, 8);
    grpc::ClientContext ctx;
    std::thread canceller([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(kEncodeDelayMs / 3));
      ctx.TryCancel();
    });
    grpc::Status st;
    if (unary) {
      v1::GenerateUnaryResponse u;
      st = stub_->GenerateUnary(&ctx, req, &u);
    } else {
      auto reader = stub_->Generate(&ctx, req);
      v1::GenerateResponse resp;
      while (reader->Read(&resp)) {
      }
      st = reader->Finish();
    }
    canceller.join();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::CANCELLED) << st.error_message();
  }
  // Cancelled before the batch formed: never encoded, never reached the engine.
  std::this_thread::sleep_for(std::chrono::milliseconds(2 * kEncodeDelayMs));
  EXPECT_EQ(Metric("muse_images_encoded_total"), encoded0);
  EXPECT_EQ(server_->EngineStats().num_requests, 0);
  // The server still serves images afterwards.
  StreamResult after = RunStream(*stub_, Chat("still there?", {PatternPng(33, 21, 8)}, 4));
  EXPECT_TRUE(after.status.ok()) << after.status.error_message();
}

TEST_F(VisionServerTest, ConcurrentImagesShareOneEncoderBatch) {
  const int64_t batches0 = Metric("muse_image_encode_batches_total");
  const int64_t encoded0 = Metric("muse_images_encoded_total");
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  // The first request occupies the encoder (delay); the other three queue and go in ONE batch.
  for (int i = 0; i < 4; ++i) {
    ts.emplace_back([&, i] {
      if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(kEncodeDelayMs / 3));
      auto stub = Stub(server_->port());
      if (RunStream(*stub, Chat("batch", {PatternPng(25, 25, 20 + i)}, 2)).status.ok()) ++ok;
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), 4);
  EXPECT_EQ(Metric("muse_images_encoded_total"), encoded0 + 4);
  EXPECT_EQ(Metric("muse_image_encode_batches_total"), batches0 + 2);
}

}  // namespace
}  // namespace muse::server
