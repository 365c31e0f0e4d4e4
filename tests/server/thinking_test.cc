// The thinking budget over gRPC end to end (issue #18): the real server in-process on the
// think-template variant of muse-tiny (written by the real `muse-make-model --think-template`, as
// scripts/setup.sh makes models/muse-tiny-think), whose chat template opens "<think>\n". A budget
// of 8 gives exactly 8 reasoning tokens, then "</think>" + "\n\n" (the served tokenizer's ids),
// then content; budget 0; n = 2; a raw prompt that does not open the block gets none; the server
// default (--thinking-token-budget) applies to requests without the field; bad values are
// INVALID_ARGUMENT naming the field (or the flag).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "src/server/server.h"
#include "src/tokenizer/tokenizer.h"
#include "tests/server/test_util.h"

namespace muse::server {
namespace {

using namespace muse::server::testing;

std::string ThinkModelDir() {
  static const std::string dir = [] {
    namespace fs = std::filesystem;
    fs::path d = fs::temp_directory_path() / ("muse_server_think_" + std::to_string(::getpid()));
    const std::string cmd =
        std::string(MUSE_BIN_DIR) +
        "/muse-make-model --preset llava-tiny --seed 0 --think-template --out " + d.string() +
        " --tokenizer " + kTokenizerDir + " > /dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return d.string();
  }();
  return dir;
}

std::unique_ptr<Server> StartServer(std::optional<int> default_budget) {
  ServerOptions o;
  o.model_dir = ThinkModelDir();
  o.served_model_name = "think";
  o.host = "127.0.0.1";
  o.port = 0;
  o.metrics_port = 0;
  o.http_port = FreePort();
  o.threads = 1;
  o.num_kv_blocks = 128;
  o.max_num_seqs = 8;
  o.no_auth = true;
  o.seed = 3;
  o.thinking_token_budget = default_budget;
  auto s = Server::Start(o);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(*s) : nullptr;
}

std::vector<int32_t> Ids(const std::string& text) {
  auto tok = tokenizer::Tokenizer::FromDirectory(ThinkModelDir());
  EXPECT_TRUE(tok.ok()) << tok.status();
  auto ids = (*tok)->Encode(text, /*add_special_tokens=*/false);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return *ids;
}

// "</think>" then "\n\n", as the server forces them.
std::vector<int32_t> ForcedIds() {
  std::vector<int32_t> f = Ids("</think>");
  for (int32_t t : Ids("\n\n")) f.push_back(t);
  return f;
}

v1::GenerateRequest Chat(int max_tokens) {
  v1::GenerateRequest r;
  v1::ChatMessage* m = r.add_messages();
  m->set_role("user");
  m->add_content()->set_text("Why is the sky blue?");
  r.mutable_sampling()->set_temperature(0);
  r.mutable_stopping()->set_max_tokens(max_tokens);
  r.mutable_stopping()->set_ignore_eos(true);
  return r;
}

struct Samples {
  grpc::Status status;
  std::map<int, std::vector<int32_t>> ids;
  std::map<int, std::string> text;            // content (chat messages: the channel split off)
  std::map<int, std::string> reasoning_text;  // the reasoning channel
  std::map<int, int> reasoning;
  v1::GenerateResponse last;
};

Samples Generate(v1::Inference::Stub& stub, const v1::GenerateRequest& req) {
  grpc::ClientContext ctx;
  Samples r;
  auto reader = stub.Generate(&ctx, req);
  v1::GenerateResponse resp;
  while (reader->Read(&resp)) {
    for (const auto& s : resp.samples()) {
      r.ids[s.index()].insert(r.ids[s.index()].end(), s.token_ids().begin(), s.token_ids().end());
      r.text[s.index()] += s.text();
      r.reasoning_text[s.index()] += s.reasoning();
      r.reasoning[s.index()] = s.reasoning_tokens();
    }
    r.last = resp;
  }
  r.status = reader->Finish();
  return r;
}

std::vector<int32_t> Slice(const std::vector<int32_t>& v, size_t from, size_t to) {
  return {v.begin() + std::min(from, v.size()), v.begin() + std::min(to, v.size())};
}

class ThinkingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = StartServer(std::nullopt).release(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    stub_ = Stub(server_->port());
  }
  static Server* server_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};
Server* ThinkingTest::server_ = nullptr;

TEST_F(ThinkingTest, BudgetEightGivesEightReasoningTokensThenTheEndThenContent) {
  const std::vector<int32_t> forced = ForcedIds();
  ASSERT_FALSE(forced.empty());
  v1::GenerateRequest req = Chat(30);
  req.mutable_sampling()->set_thinking_token_budget(8);
  const Samples r = Generate(*stub_, req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  const std::vector<int32_t>& ids = r.ids.at(0);
  ASSERT_EQ(ids.size(), 30u);
  EXPECT_EQ(Slice(ids, 8, 8 + forced.size()), forced);
  EXPECT_EQ(r.reasoning.at(0), 8);
  EXPECT_EQ(r.last.usage().reasoning_tokens(), 8);
  EXPECT_EQ(r.last.usage().completion_tokens(), 30);
  // The text: 8 tokens of reasoning (the reasoning channel), the end tag, then content.
  const std::string& text = r.text.at(0);
  EXPECT_FALSE(r.reasoning_text.at(0).empty());
  EXPECT_EQ(text.find("think>"), std::string::npos) << text;
  ASSERT_TRUE(text.starts_with("\n\n")) << text;
  EXPECT_GT(text.size(), 10u) << "no content after the block: " << text;

  // Without the budget the same greedy request writes the same first 8 tokens and no end tag.
  const Samples free = Generate(*stub_, Chat(30));
  ASSERT_TRUE(free.status.ok());
  EXPECT_EQ(Slice(free.ids.at(0), 0, 8), Slice(ids, 0, 8));
  EXPECT_EQ(free.last.usage().reasoning_tokens(), 0);
  EXPECT_EQ(free.text.at(0), "");  // all reasoning: the block never closed
  EXPECT_EQ(free.reasoning_text.at(0).find("</think>"), std::string::npos);
}

TEST_F(ThinkingTest, BudgetZeroClosesTheBlockFirst) {
  v1::GenerateRequest req = Chat(12);
  req.mutable_sampling()->set_thinking_token_budget(0);
  const Samples r = Generate(*stub_, req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  const std::vector<int32_t> forced = ForcedIds();
  EXPECT_EQ(Slice(r.ids.at(0), 0, forced.size()), forced);
  EXPECT_EQ(r.last.usage().reasoning_tokens(), 0);
}

TEST_F(ThinkingTest, EachSampleIsBudgeted) {
  v1::GenerateRequest req = Chat(20);
  req.mutable_sampling()->set_temperature(1.0f);
  req.mutable_sampling()->set_seed(11);
  req.mutable_sampling()->set_n(2);
  req.mutable_sampling()->set_thinking_token_budget(5);
  const Samples r = Generate(*stub_, req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  const std::vector<int32_t> forced = ForcedIds();
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(Slice(r.ids.at(i), 5, 5 + forced.size()), forced) << i;
    EXPECT_EQ(r.reasoning.at(i), 5) << i;
  }
  EXPECT_EQ(r.last.usage().reasoning_tokens(), 10);
}

// A raw prompt does not open the block, and the model does not write "<think>": no reasoning.
TEST_F(ThinkingTest, PromptWithoutAnOpenBlockHasNoReasoning) {
  v1::GenerateRequest req = GreedyPrompt("The sky is", 16);
  req.mutable_sampling()->set_thinking_token_budget(4);
  const Samples r = Generate(*stub_, req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.ids.at(0).size(), 16u);
  EXPECT_EQ(r.last.usage().reasoning_tokens(), 0);
  EXPECT_EQ(r.text.at(0).find("</think>"), std::string::npos);
}

TEST_F(ThinkingTest, BadBudgetsAreInvalidArgumentNamingTheField) {
  v1::GenerateRequest req = Chat(8);
  req.mutable_sampling()->set_thinking_token_budget(-1);
  Samples r = Generate(*stub_, req);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(r.status.error_message().find("sampling.thinking_token_budget"), std::string::npos)
      << r.status.error_message();

  req.mutable_sampling()->set_thinking_token_budget(4);
  req.mutable_response_format()->set_json_object(true);
  r = Generate(*stub_, req);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(r.status.error_message().find("sampling.thinking_token_budget"), std::string::npos)
      << r.status.error_message();
  EXPECT_NE(r.status.error_message().find("response_format"), std::string::npos);
}

// The OpenAI HTTP face: `thinking_token_budget` in,
// usage.completion_tokens_details.reasoning_tokens out; a bad value is 400 naming the parameter.
nlohmann::json PostChat(int port, const nlohmann::json& body, int* status) {
  const std::string payload = body.dump();
  const std::string raw =
      HttpExchange(port,
                   "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                   "Content-Type: application/json\r\nContent-Length: " +
                       std::to_string(payload.size()) + "\r\n\r\n" + payload,
                   /*half_close=*/false);
  *status = raw.size() > 12 ? std::atoi(raw.substr(9, 3).c_str()) : 0;
  const size_t at = raw.find("\r\n\r\n");
  if (at == std::string::npos) return nullptr;
  return nlohmann::json::parse(raw.substr(at + 4), nullptr, /*allow_exceptions=*/false);
}

TEST_F(ThinkingTest, HttpBudgetReportsReasoningTokens) {
  nlohmann::json body = {
      {"model", "think"},   {"messages", {{{"role", "user"}, {"content", "Why is the sky blue?"}}}},
      {"max_tokens", 30},   {"temperature", 0},
      {"ignore_eos", true}, {"thinking_token_budget", 8}};
  int status = 0;
  nlohmann::json r = PostChat(server_->http_port(), body, &status);
  ASSERT_EQ(status, 200) << r.dump();
  EXPECT_EQ(r["usage"]["completion_tokens"], 30) << r.dump();
  EXPECT_EQ(r["usage"]["completion_tokens_details"]["reasoning_tokens"], 8) << r.dump();

  body["thinking_token_budget"] = -1;
  r = PostChat(server_->http_port(), body, &status);
  EXPECT_EQ(status, 400) << r.dump();
  EXPECT_EQ(r["error"]["param"], "thinking_token_budget") << r.dump();

  body.erase("thinking_token_budget");
  r = PostChat(server_->http_port(), body, &status);
  ASSERT_EQ(status, 200) << r.dump();
  EXPECT_EQ(r["usage"]["completion_tokens_details"]["reasoning_tokens"], 0) << r.dump();
}

// --thinking-token-budget: requests without the field get it; a request's own value wins;
// response_format requests are left alone.
TEST(ThinkingDefaultTest, ServerDefaultApplies) {
  std::unique_ptr<Server> server = StartServer(3);
  ASSERT_NE(server, nullptr);
  auto stub = Stub(server->port());
  Samples r = Generate(*stub, Chat(16));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  const std::vector<int32_t> forced = ForcedIds();
  EXPECT_EQ(Slice(r.ids.at(0), 3, 3 + forced.size()), forced);
  EXPECT_EQ(r.last.usage().reasoning_tokens(), 3);

  v1::GenerateRequest own = Chat(16);
  own.mutable_sampling()->set_thinking_token_budget(6);
  r = Generate(*stub, own);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.last.usage().reasoning_tokens(), 6);

  v1::GenerateRequest constrained = Chat(16);
  constrained.mutable_response_format()->set_json_object(true);
  r = Generate(*stub, constrained);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.last.usage().reasoning_tokens(), 0);
}

TEST(ThinkingDefaultTest, NegativeDefaultIsRefusedNamingTheFlag) {
  ServerOptions o;
  o.model_dir = ThinkModelDir();
  o.no_auth = true;
  o.port = 0;
  o.thinking_token_budget = -2;
  auto s = Server::Start(o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("--thinking-token-budget"), std::string::npos) << s.status();
}

}  // namespace
}  // namespace muse::server
