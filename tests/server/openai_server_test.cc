// The OpenAI-compatible HTTP face on the real server in-process (real engine, CPU runner, tiny
// random checkpoint, Llama 3 tokenizer), driven with raw HTTP/1.1 over loopback (Boost.Beast's
// synchronous client, or plain sockets for malformed input): response shapes, SSE framing, every
// error path with OpenAI's error shape, and disconnect -> abort.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <thread>

#include "src/server/server.h"
#include "tests/server/test_util.h"

namespace muse::server {
namespace {

using namespace muse::server::testing;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using json = nlohmann::json;

struct HttpResult {
  int status = 0;
  std::string body;
  std::string retry_after;
  std::string content_type;
  json Json() const { return json::parse(body, nullptr, false); }
};

HttpResult Request(int port, http::verb verb, const std::string& path, const std::string& body,
                   const std::string& key = "key-a") {
  asio::io_context ioc;
  asio::ip::tcp::socket sock(ioc);
  sock.connect({asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)});
  http::request<http::string_body> req{verb, path, 11};
  req.set(http::field::host, "127.0.0.1");
  if (!key.empty()) req.set(http::field::authorization, "Bearer " + key);
  if (verb == http::verb::post) req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  http::write(sock, req);
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 << 20);
  http::read(sock, buf, parser);
  auto& res = parser.get();
  HttpResult out;
  out.status = res.result_int();
  out.body = res.body();
  out.retry_after = std::string(res[http::field::retry_after]);
  out.content_type = std::string(res[http::field::content_type]);
  return out;
}

HttpResult Post(int port, const std::string& path, const json& body,
                const std::string& key = "key-a") {
  return Request(port, http::verb::post, path, body.dump(), key);
}

// `data: ...` events of an SSE body, in order (comments skipped).
std::vector<std::string> Events(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) break;
    const std::string ev = body.substr(pos, end - pos);
    if (ev.rfind("data: ", 0) == 0) out.push_back(ev.substr(6));
    pos = end + 2;
  }
  return out;
}

// Raw bytes -> the server's whole reply (the server closes after an error).
std::string RawExchange(int port, const std::string& bytes) {
  return HttpExchange(port, bytes, /*half_close=*/true);
}

json Chat(const std::string& text, int max_tokens) {
  return {{"model", ""},
          {"messages", {{{"role", "user"}, {"content", text}}}},
          {"max_tokens", max_tokens},
          {"temperature", 0},
          {"ignore_eos", true}};
}

// The error shape OpenAI's SDKs parse: {"error": {message, type, param, code}}.
void ExpectError(const HttpResult& r, int status, const json& param) {
  EXPECT_EQ(r.status, status) << r.body;
  json j = r.Json();
  ASSERT_TRUE(j.is_object()) << r.body;
  ASSERT_TRUE(j.contains("error")) << r.body;
  const json& e = j["error"];
  EXPECT_TRUE(e["message"].is_string()) << r.body;
  EXPECT_TRUE(e["type"].is_string()) << r.body;
  EXPECT_TRUE(e.contains("param")) << r.body;
  EXPECT_TRUE(e.contains("code")) << r.body;
  EXPECT_EQ(e["param"], param) << r.body;
}

class OpenAiServerTest : public ::testing::Test {
 protected:
  static ServerOptions Options() {
    ServerOptions o;
    o.model_dir = TinyModelDir();
    o.served_model_name = "tiny";
    o.host = "127.0.0.1";
    o.port = 0;
    o.http_port = kEphemeralPort;
    o.http_max_body_bytes = 256 << 10;
    o.http_ping_interval = absl::Milliseconds(50);
    o.threads = 1;
    o.num_kv_blocks = 256;
    o.max_num_seqs = 8;
    o.api_keys_file = TinyModelDir() + "/api_keys.json";
    o.seed = 1;
    return o;
  }
  static void SetUpTestSuite() {
    auto s = Server::Start(Options());
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = s->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    port_ = server_->http_port();
    ASSERT_GT(port_, 0);
  }
  // Every test leaves the engine idle with no KV referenced.
  void TearDown() override {
    EXPECT_TRUE(WaitForIdleEngine(*server_))
        << "kv_blocks_used=" << server_->EngineStats().kv_blocks_used;
  }

  static Server* server_;
  int port_ = 0;
};
Server* OpenAiServerTest::server_ = nullptr;

TEST_F(OpenAiServerTest, HealthAndModels) {
  HttpResult h = Request(port_, http::verb::get, "/health", "", "");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "SERVING\n");

  HttpResult m = Request(port_, http::verb::get, "/v1/models", "");
  ASSERT_EQ(m.status, 200) << m.body;
  json j = m.Json();
  EXPECT_EQ(j["object"], "list");
  ASSERT_EQ(j["data"].size(), 1u);
  EXPECT_EQ(j["data"][0]["id"], "tiny");
  EXPECT_EQ(j["data"][0]["object"], "model");
  EXPECT_TRUE(j["data"][0]["created"].is_number());
  EXPECT_TRUE(j["data"][0]["owned_by"].is_string());
  EXPECT_EQ(Request(port_, http::verb::get, "/v1/models/tiny", "").Json()["id"], "tiny");
  ExpectError(Request(port_, http::verb::get, "/v1/models/other", ""), 404, "model");

  ExpectError(Request(port_, http::verb::get, "/v1/models", "", ""), 401, nullptr);
  ExpectError(Request(port_, http::verb::get, "/v1/models", "", "wrong"), 401, nullptr);
  ExpectError(Request(port_, http::verb::get, "/v1/nothing", ""), 404, nullptr);
  EXPECT_EQ(Request(port_, http::verb::get, "/v1/chat/completions", "").status, 405);
}

TEST_F(OpenAiServerTest, ChatUnaryShape) {
  HttpResult r = Post(port_, "/v1/chat/completions", Chat("Hello there", 6));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.content_type, "application/json");
  json j = r.Json();
  EXPECT_TRUE(j["id"].get<std::string>().rfind("chatcmpl-", 0) == 0) << j;
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["model"], "tiny");
  EXPECT_TRUE(j["created"].is_number_integer());
  ASSERT_EQ(j["choices"].size(), 1u);
  const json& c = j["choices"][0];
  EXPECT_EQ(c["index"], 0);
  EXPECT_EQ(c["message"]["role"], "assistant");
  EXPECT_TRUE(c["message"]["content"].is_string());
  EXPECT_EQ(c["finish_reason"], "length");
  EXPECT_TRUE(c["logprobs"].is_null());
  const json& u = j["usage"];
  EXPECT_EQ(u["completion_tokens"], 6);
  EXPECT_GT(u["prompt_tokens"].get<int>(), 3);
  EXPECT_EQ(u["total_tokens"], u["prompt_tokens"].get<int>() + 6);
  EXPECT_TRUE(u["prompt_tokens_details"]["cached_tokens"].is_number_integer());
}

TEST_F(OpenAiServerTest, ChatStreamN2IncludeUsage) {
  json req = Chat("Tell me a story", 5);
  req["n"] = 2;
  req["stream"] = true;
  req["stream_options"] = {{"include_usage", true}};
  req["temperature"] = 0;
  HttpResult r = Post(port_, "/v1/chat/completions", req);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.content_type, "text/event-stream");
  std::vector<std::string> ev = Events(r.body);
  ASSERT_GE(ev.size(), 4u) << r.body;
  EXPECT_EQ(ev.back(), "[DONE]");
  std::map<int, std::string> text;
  std::map<int, int> finishes, role_chunks;
  std::map<int, bool> first_seen;
  json usage;
  for (size_t i = 0; i + 1 < ev.size(); ++i) {
    json c = json::parse(ev[i], nullptr, false);
    ASSERT_TRUE(c.is_object()) << ev[i];
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    ASSERT_TRUE(c.contains("usage")) << ev[i];
    if (c["choices"].empty()) {
      EXPECT_EQ(i + 2, ev.size()) << "the usage chunk is the last before [DONE]";
      usage = c["usage"];
      continue;
    }
    EXPECT_TRUE(c["usage"].is_null());
    ASSERT_EQ(c["choices"].size(), 1u);
    const json& ch = c["choices"][0];
    const int idx = ch["index"];
    EXPECT_EQ(finishes[idx], 0) << "a chunk after the choice's finish_reason";
    if (!first_seen[idx]) {
      EXPECT_EQ(ch["delta"]["role"], "assistant") << "the first chunk of a choice carries role";
      first_seen[idx] = true;
    }
    if (ch["delta"].contains("role")) ++role_chunks[idx];
    if (ch["delta"].contains("content")) text[idx] += ch["delta"]["content"].get<std::string>();
    if (!ch["finish_reason"].is_null()) {
      EXPECT_EQ(ch["finish_reason"], "length");
      ++finishes[idx];
    }
  }
  EXPECT_EQ(finishes[0], 1);
  EXPECT_EQ(finishes[1], 1);
  EXPECT_EQ(role_chunks[0], 1);
  EXPECT_EQ(role_chunks[1], 1);
  ASSERT_TRUE(usage.is_object());
  EXPECT_EQ(usage["completion_tokens"], 10);
  EXPECT_TRUE(usage["prompt_tokens_details"]["cached_tokens"].is_number_integer());
  // Greedy: both choices and the unary answer agree.
  EXPECT_EQ(text[0], text[1]);
  json unary = Post(port_, "/v1/chat/completions", Chat("Tell me a story", 5)).Json();
  EXPECT_EQ(text[0], unary["choices"][0]["message"]["content"]);
}

TEST_F(OpenAiServerTest, CompletionsShapes) {
  json req = {{"model", "tiny"},
              {"prompt", {"Once upon a time", "The capital of France"}},
              {"max_tokens", 4},
              {"temperature", 0},
              {"ignore_eos", true}};
  HttpResult r = Post(port_, "/v1/completions", req);
  ASSERT_EQ(r.status, 200) << r.body;
  json j = r.Json();
  EXPECT_EQ(j["object"], "text_completion");
  ASSERT_EQ(j["choices"].size(), 2u);
  EXPECT_EQ(j["choices"][1]["index"], 1);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["completion_tokens"], 8);

  // Token ids, streamed, with legacy logprobs.
  json ids = {{"prompt", {128000, 9906, 1917}},
              {"max_tokens", 3},
              {"temperature", 0},
              {"ignore_eos", true},
              {"logprobs", 2},
              {"stream", true}};
  HttpResult s = Post(port_, "/v1/completions", ids);
  ASSERT_EQ(s.status, 200) << s.body;
  std::vector<std::string> ev = Events(s.body);
  ASSERT_GE(ev.size(), 2u);
  EXPECT_EQ(ev.back(), "[DONE]");
  int tokens = 0;
  for (size_t i = 0; i + 1 < ev.size(); ++i) {
    json c = json::parse(ev[i]);
    EXPECT_EQ(c["object"], "text_completion");
    EXPECT_FALSE(c.contains("usage")) << "no usage without include_usage";
    const json& lp = c["choices"][0]["logprobs"];
    if (lp.is_null()) continue;
    ASSERT_EQ(lp["tokens"].size(), lp["token_logprobs"].size());
    ASSERT_EQ(lp["tokens"].size(), lp["top_logprobs"].size());
    ASSERT_EQ(lp["tokens"].size(), lp["text_offset"].size());
    for (const json& top : lp["top_logprobs"]) EXPECT_GE(top.size(), 1u);
    tokens += static_cast<int>(lp["tokens"].size());
  }
  EXPECT_EQ(tokens, 3);
}

TEST_F(OpenAiServerTest, ChatLogprobs) {
  json req = Chat("Hi", 3);
  req["logprobs"] = true;
  req["top_logprobs"] = 2;
  json j = Post(port_, "/v1/chat/completions", req).Json();
  const json& content = j["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 3u) << j;
  for (const json& t : content) {
    EXPECT_TRUE(t["token"].is_string());
    EXPECT_LE(t["logprob"].get<double>(), 0.0);
    EXPECT_TRUE(t["bytes"].is_array());
    ASSERT_EQ(t["top_logprobs"].size(), 2u);
    EXPECT_GE(t["top_logprobs"][0]["logprob"].get<double>(),
              t["top_logprobs"][1]["logprob"].get<double>());
    EXPECT_TRUE(t["top_logprobs"][0]["bytes"].is_array());
  }
}

TEST_F(OpenAiServerTest, BadFieldsAre400NamingTheParam) {
  const std::string chat = "/v1/chat/completions";
  auto with = [](const char* key, json v) {
    json r = Chat("Hi", 2);
    r[key] = std::move(v);
    return r;
  };
  ExpectError(Post(port_, chat, with("temperature", "hot")), 400, "temperature");
  ExpectError(Post(port_, chat, with("top_p", 0)), 400, "top_p");
  ExpectError(Post(port_, chat, with("n", 0)), 400, "n");
  ExpectError(Post(port_, chat, with("max_completion_tokens", 0)), 400, "max_completion_tokens");
  ExpectError(Post(port_, chat, with("max_tokens", 1 << 20)), 400, "max_tokens");
  ExpectError(Post(port_, chat, with("logit_bias", {{"abc", 1}})), 400, "logit_bias");
  ExpectError(Post(port_, chat, with("logit_bias", {{"5", 1000}})), 400, "logit_bias");
  ExpectError(Post(port_, chat, with("top_logprobs", 3)), 400, "top_logprobs");
  ExpectError(Post(port_, chat, with("stop", 5)), 400, "stop");
  ExpectError(Post(port_, chat, with("stream_options", {{"include_usage", true}})), 400,
              "stream_options");
  ExpectError(Post(port_, chat, with("response_format", {{"type", "json_schema"}})), 400,
              "response_format.json_schema");
  EXPECT_EQ(Post(port_, chat, with("response_format", {{"type", "text"}})).status, 200);
  // Tools (more in tool_calls_test): a tool without its function, required without tools.
  ExpectError(Post(port_, chat, with("tools", json::array({{{"type", "function"}}}))), 400,
              "tools[0].function");
  ExpectError(Post(port_, chat, with("tool_choice", "required")), 400, "tool_choice");
  EXPECT_EQ(Post(port_, chat, with("tool_choice", "auto")).status, 200);
  ExpectError(Post(port_, chat, with("messages", json::array())), 400, "messages");
  ExpectError(Post(port_, chat, with("messages", "hi")), 400, "messages");
  ExpectError(Post(port_, chat, with("messages", {{{"role", "wizard"}, {"content", "x"}}})), 400,
              "messages[0].role");
  ExpectError(Post(port_, chat,
                   with("messages",
                        {{{"role", "user"}, {"content", {{{"type", "audio"}, {"data", "x"}}}}}})),
              400, "messages[0].content[0].type");
  ExpectError(
      Post(port_, chat,
           with("messages",
                {{{"role", "user"},
                  {"content",
                   {{{"type", "image_url"}, {"image_url", {{"url", "https://x/y.png"}}}}}}}})),
      400, "messages[0].content[0].image_url");
  ExpectError(Post(port_, chat, with("model", "gpt-4o")), 404, "model");
  ExpectError(Post(port_, "/v1/completions", json{{"prompt", json::array()}}), 400, "prompt");
  ExpectError(Post(port_, "/v1/completions", json{{"prompt", {1, -5}}}), 400, "prompt[1]");
  ExpectError(Post(port_, "/v1/completions", json{{"prompt", {1, 999999}}}), 400, "prompt[1]");
  ExpectError(Post(port_, "/v1/completions", json{{"prompt", {"ok", ""}}}), 400, "prompt[1]");
  ExpectError(Post(port_, "/v1/completions", json{{"prompt", "x"}, {"echo", true}}), 400, "echo");
  ExpectError(Post(port_, "/v1/completions", json{{"prompt", "x"}, {"logprobs", 99}}), 400,
              "logprobs");

  // Malformed JSON and invalid UTF-8 name where the parse stopped.
  ExpectError(Request(port_, http::verb::post, chat, "{\"messages\": [", "key-a"), 400,
              "messages[0]");
  ExpectError(Request(port_, http::verb::post, chat, "[1, 2]", "key-a"), 400, "body");
  ExpectError(
      Request(port_, http::verb::post, chat,
              "{\"messages\": [{\"role\": \"user\", \"content\": \"a\xff\xfe\"}]}", "key-a"),
      400, "messages[0].content");
}

TEST_F(OpenAiServerTest, LimitsAndQuotas) {
  // Body over --http-max-body-bytes (256 KiB here): 413.
  json big = Chat(std::string(300 << 10, 'a'), 2);
  ExpectError(Post(port_, "/v1/chat/completions", big), 413, "body");
  // Headers over 16 KiB: 431, connection closed; the server keeps serving.
  const std::string huge =
      "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'x') + "\r\n\r\n";
  EXPECT_NE(RawExchange(port_, huge).find("HTTP/1.1 431"), std::string::npos);
  EXPECT_NE(RawExchange(port_, "NOT HTTP AT ALL\r\n\r\n").find("HTTP/1.1 400"), std::string::npos);
  // key-c: 2 requests per minute.
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(Post(port_, "/v1/chat/completions", Chat("q", 1), "key-c").status, 200);
  }
  HttpResult r = Post(port_, "/v1/chat/completions", Chat("q", 1), "key-c");
  ExpectError(r, 429, nullptr);
  // 2 requests/min: the bucket holds the next one in about 30 s.
  ASSERT_FALSE(r.retry_after.empty());
  EXPECT_GE(std::stoi(r.retry_after), 1);
  EXPECT_LE(std::stoi(r.retry_after), 30);
  // key-b is batch-only: an interactive priority is 403.
  json prio = Chat("q", 1);
  prio["priority"] = "interactive";
  ExpectError(Post(port_, "/v1/chat/completions", prio, "key-b"), 403, "priority");
}

TEST_F(OpenAiServerTest, TokenizeDetokenize) {
  HttpResult t =
      Post(port_, "/tokenize", json{{"prompt", "Hello world"}, {"return_token_strs", true}});
  ASSERT_EQ(t.status, 200) << t.body;
  json j = t.Json();
  ASSERT_GE(j["tokens"].size(), 2u);
  EXPECT_EQ(j["tokens"].back(), 1917);  // "Hello world" -> ... 9906, 1917 (Llama 3)
  EXPECT_EQ(j["count"], j["tokens"].size());
  EXPECT_EQ(j["token_strs"].size(), j["tokens"].size());
  EXPECT_GT(j["max_model_len"].get<int>(), 0);
  HttpResult d = Post(port_, "/detokenize", json{{"tokens", {9906, 1917}}});
  ASSERT_EQ(d.status, 200) << d.body;
  EXPECT_EQ(d.Json()["prompt"], "Hello world");
  ExpectError(Post(port_, "/detokenize", json{{"tokens", {-1}}}), 400, "tokens[0]");
  HttpResult c =
      Post(port_, "/tokenize", json{{"messages", {{{"role", "user"}, {"content", "Hi"}}}}});
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_GT(c.Json()["count"].get<int>(), 3);
}

// A client that hangs up mid-stream: the engine request is aborted (no request, no KV left),
// and a stream running beside it, plus garbage on a third connection, are untouched.
TEST_F(OpenAiServerTest, DisconnectAbortsAndOthersAreUntouched) {
  std::thread other([&] {
    json req = Chat("neighbour", 40);
    req["stream"] = true;
    HttpResult r = Post(port_, "/v1/chat/completions", req);
    EXPECT_EQ(r.status, 200);
    std::vector<std::string> ev = Events(r.body);
    ASSERT_FALSE(ev.empty());
    EXPECT_EQ(ev.back(), "[DONE]");
  });
  const int64_t aborted_before = server_->EngineStats().requests_aborted;
  json req = Chat("long", 900);
  req["stream"] = true;
  const std::string body = req.dump();
  const std::string raw =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
      "key-a\r\nContent-Type: application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  const int fd = ConnectLoopback(port_);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::send(fd, raw.data(), raw.size(), 0), static_cast<ssize_t>(raw.size()));
  std::string got;
  char buf[4096];
  while (got.find("data: ") == std::string::npos) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    ASSERT_GT(n, 0);
    got.append(buf, n);
  }
  EXPECT_NE(got.find("text/event-stream"), std::string::npos);
  EXPECT_NE(RawExchange(port_,
                        "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 5\r\n\r\n"
                        "\x01\x02\x03\x04\x05")
                .find("HTTP/1.1 401"),
            std::string::npos);
  ::close(fd);
  other.join();
  // Aborted (not finished by length): nothing left in the engine.
  EXPECT_TRUE(WaitFor(
      [&] {
        auto s = server_->EngineStats();
        return s.num_requests == 0 && s.requests_aborted == aborted_before + 1;
      },
      std::chrono::seconds(5)))
      << "aborted " << server_->EngineStats().requests_aborted - aborted_before;
}

}  // namespace
}  // namespace muse::server

namespace muse::server {
namespace {

using namespace muse::server::testing;

// Raw bytes of a whole streamed response (Connection: close; the server closes). Unlike
// RawExchange, no half-close after the request: the server takes a client FIN as a hang-up.
std::string StreamRaw(int port, const json& req) {
  const std::string body = req.dump();
  const std::string raw =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
      "Content-Type: application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  return HttpExchange(port, raw, /*half_close=*/false);
}

ServerOptions OneSlotOptions() {
  ServerOptions o;
  o.model_dir = TinyModelDir();
  o.host = "127.0.0.1";
  o.port = 0;
  o.http_port = kEphemeralPort;
  o.http_ping_interval = absl::Milliseconds(20);
  o.threads = 1;
  o.num_kv_blocks = 256;
  o.max_num_seqs = 1;
  o.no_auth = true;
  return o;
}

// One engine slot: a stream queued behind another is idle and gets `: ping` comments; SIGTERM's
// drain answers new requests and /health 503 while the streams in flight finish.
TEST(OpenAiServerDrainTest, PingsWhileQueuedThenDrain) {
  auto s = Server::Start(OneSlotOptions());
  ASSERT_TRUE(s.ok()) << s.status();
  const int port = (*s)->http_port();
  // The first stream holds the only slot for ~1000 decode steps (~2 s here). The second must be
  // seen queued behind it; on a starved machine it can arrive after the first ended (CI saw it
  // once), so such a round does not count and another pair is sent.
  json first = Chat("first", 1000);
  first["stream"] = true;
  json second = Chat("second", 3);
  second["stream"] = true;
  std::string a, b;
  std::thread ta, tb;
  bool queued = false;
  for (int round = 0; round < 4 && !queued; ++round) {
    if (ta.joinable()) ta.join();
    if (tb.joinable()) tb.join();
    ASSERT_TRUE(WaitForIdleEngine(**s));
    ta = std::thread([&] { a = StreamRaw(port, first); });
    ASSERT_TRUE(WaitFor([&] { return (*s)->EngineStats().num_running_seqs == 1; },
                        std::chrono::seconds(30)));
    tb = std::thread([&] { b = StreamRaw(port, second); });
    queued = WaitFor(
        [&] {
          const auto st = (*s)->EngineStats();
          return st.num_requests == 2 || (st.num_requests == 0 && st.requests_finished > 0);
        },
        std::chrono::seconds(30));
    queued = queued && (*s)->EngineStats().num_requests == 2;
    if (!queued) std::fprintf(stderr, "round %d: the second stream was not queued\n", round);
  }
  ASSERT_TRUE(queued) << "the second stream never queued behind the first";
  std::thread drain([&] { (*s)->Drain(absl::Seconds(30)); });
  EXPECT_TRUE(WaitFor([&] { return !(*s)->serving(); }, std::chrono::seconds(5)));
  EXPECT_NE(RawExchange(port, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .find("HTTP/1.1 503"),
            std::string::npos);
  const std::string refused = StreamRaw(port, second);
  EXPECT_NE(refused.find("HTTP/1.1 503"), std::string::npos) << refused;
  EXPECT_NE(refused.find("\"code\":\"service_unavailable\""), std::string::npos) << refused;
  ta.join();
  tb.join();
  drain.join();
  for (const std::string* r : {&a, &b}) {
    EXPECT_NE(r->find("HTTP/1.1 200"), std::string::npos) << *r;
    EXPECT_NE(r->find("data: [DONE]"), std::string::npos) << *r;
    EXPECT_NE(r->find("\"finish_reason\":\"length\""), std::string::npos) << *r;
  }
  EXPECT_NE(b.find(": ping"), std::string::npos) << "the queued stream got no keep-alive";
}

// Once the drain is over, no connection is left open with nobody serving it: an idle keep-alive
// connection and one whose request is half sent both see the server close (EOF), not silence.
TEST(OpenAiServerDrainTest, DrainClosesIdleAndHalfReadConnections) {
  auto s = Server::Start(OneSlotOptions());
  ASSERT_TRUE(s.ok()) << s.status();
  const int port = (*s)->http_port();
  const int idle = ConnectLoopback(port);
  const int half = ConnectLoopback(port);
  ASSERT_GE(idle, 0);
  ASSERT_GE(half, 0);
  const std::string ask = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(::send(idle, ask.data(), ask.size(), MSG_NOSIGNAL), static_cast<ssize_t>(ask.size()));
  std::string got;
  char buf[4096];
  while (got.find("SERVING\n") == std::string::npos) {
    const ssize_t n = ::recv(idle, buf, sizeof(buf), 0);
    ASSERT_GT(n, 0);
    got.append(buf, static_cast<size_t>(n));
  }
  const std::string partial = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le";
  ASSERT_EQ(::send(half, partial.data(), partial.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(partial.size()));
  ASSERT_TRUE(WaitFor([&] { return (*s)->http_connections() == 2; }, std::chrono::seconds(10)));
  (*s)->Drain(absl::Seconds(1));
  for (int fd : {idle, half}) {
    const timeval wait{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof(wait));
    errno = 0;
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    EXPECT_TRUE(n == 0 || (n < 0 && errno == ECONNRESET)) << "recv " << n << " errno " << errno;
    ::close(fd);
  }
}

}  // namespace
}  // namespace muse::server
