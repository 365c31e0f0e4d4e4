// Structured output end to end (issue 17): the real server in-process (engine, CPU runner, tiny
// RANDOM checkpoint with the Llama 3 vocabulary -- so the grammar alone makes the output parse),
// over gRPC and the OpenAI-compatible HTTP API. Every completion of every schema, sampled at
// temperature 1 with n = 4, parses and validates against its schema with valijson (an
// independent JSON Schema validator) and finishes with "stop"; regex, grammar and choice outputs
// match. Bad constraints are INVALID_ARGUMENT / HTTP 400 naming the field, and the server keeps
// serving; the compiled-grammar cache compiles a constraint once, also under concurrency.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validator.hpp>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "src/server/server.h"
#include "tests/server/test_util.h"

namespace muse::server {
namespace {

using namespace muse::server::testing;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using json = nlohmann::json;

constexpr int kMaxTokens = 300;  // every schema below needs far fewer (bounded strings, ranges)

// Schemas whose every instance is short (strings bounded, integers ranged, arrays capped), so a
// completion can always finish within kMaxTokens. Draft 7 keywords (valijson's draft).
const std::vector<std::pair<std::string, std::string>>& Schemas() {
  static const auto* s = new std::vector<std::pair<std::string, std::string>>{
      {"required_and_optional", R"({"type": "object",
        "properties": {"name": {"type": "string", "maxLength": 6},
                       "age": {"type": "integer", "minimum": 0, "maximum": 120},
                       "admin": {"type": "boolean"},
                       "nick": {"type": "string", "minLength": 1, "maxLength": 3}},
        "required": ["name", "age"]})"},
      {"enums_and_const", R"({"type": "object",
        "properties": {"color": {"enum": ["red", "green", "blue"]},
                       "size": {"enum": [1, 2, 3, null]},
                       "kind": {"const": "shirt"}},
        "required": ["color", "size", "kind"], "additionalProperties": false})"},
      {"nested_arrays", R"({"type": "object",
        "properties": {
          "matrix": {"type": "array", "minItems": 1, "maxItems": 3,
                     "items": {"type": "array", "minItems": 1, "maxItems": 3,
                               "items": {"type": "integer", "minimum": -9, "maximum": 9}}},
          "tags": {"type": "array", "maxItems": 2, "items": {"type": "string", "maxLength": 4}}},
        "required": ["matrix", "tags"]})"},
      {"integer_ranges", R"({"type": "array", "minItems": 2, "maxItems": 4,
        "items": {"type": "integer", "minimum": -1000, "maximum": 4095}})"},
      {"any_of", R"({"anyOf": [
        {"type": "integer", "minimum": 0, "maximum": 50},
        {"type": "object", "properties": {"x": {"type": "boolean"}}, "required": ["x"],
         "additionalProperties": false},
        {"enum": ["none", "all"]}]})"},
      {"ref_defs", R"({"definitions": {
          "point": {"type": "object", "additionalProperties": false, "required": ["x", "y"],
                    "properties": {"x": {"type": "integer", "minimum": 0, "maximum": 9},
                                   "y": {"type": "integer", "minimum": 0, "maximum": 9}}}},
        "type": "object", "additionalProperties": false, "required": ["a", "b"],
        "properties": {"a": {"$ref": "#/definitions/point"},
                       "b": {"$ref": "#/definitions/point"}}})"},
  };
  return *s;
}

// valijson: "" when `instance` (JSON text) parses and is valid against `schema`, else why not.
std::string Invalid(const std::string& schema_text, const std::string& instance) {
  json doc = json::parse(instance, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return "does not parse as JSON";
  json schema_doc = json::parse(schema_text);
  valijson::Schema schema;
  valijson::SchemaParser parser;
  valijson::adapters::NlohmannJsonAdapter schema_adapter(schema_doc);
  parser.populateSchema(schema_adapter, schema);
  valijson::Validator validator;
  valijson::ValidationResults results;
  valijson::adapters::NlohmannJsonAdapter target(doc);
  if (validator.validate(schema, target, &results)) return "";
  std::string why;
  valijson::ValidationResults::Error e;
  while (results.popError(e)) {
    for (const std::string& c : e.context) why += c;
    why += ": " + e.description + "; ";
  }
  return why;
}

struct HttpResult {
  int status = 0;
  std::string body;
  json Json() const { return json::parse(body, nullptr, false); }
};

HttpResult Post(int port, const std::string& path, const json& body) {
  asio::io_context ioc;
  asio::ip::tcp::socket sock(ioc);
  sock.connect({asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)});
  http::request<http::string_body> req{http::verb::post, path, 11};
  req.set(http::field::host, "127.0.0.1");
  req.set(http::field::authorization, "Bearer key-a");
  req.set(http::field::content_type, "application/json");
  req.body() = body.dump();
  req.prepare_payload();
  http::write(sock, req);
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 << 20);
  http::read(sock, buf, parser);
  return {static_cast<int>(parser.get().result_int()), parser.get().body()};
}

// An OpenAI error body: status, and `param` naming the field.
void ExpectHttpError(const HttpResult& r, const std::string& param, const std::string& contains) {
  EXPECT_EQ(r.status, 400) << r.body;
  const json j = r.Json();
  ASSERT_TRUE(j.is_object() && j.contains("error")) << r.body;
  EXPECT_EQ(j["error"]["type"], "invalid_request_error") << r.body;
  EXPECT_EQ(j["error"]["param"], param) << r.body;
  EXPECT_TRUE(absl::StrContains(j["error"]["message"].get<std::string>(), contains)) << r.body;
}

class StructuredOutputTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ServerOptions o;
    o.model_dir = TinyModelDir();
    o.served_model_name = "tiny";
    o.host = "127.0.0.1";
    o.port = 0;
    o.http_port = kEphemeralPort;
    o.metrics_port = 0;
    o.threads = 1;
    o.num_kv_blocks = 512;
    o.max_num_seqs = 16;
    o.api_keys_file = TinyModelDir() + "/api_keys.json";
    o.seed = 1;
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
  void TearDown() override { EXPECT_TRUE(WaitForIdleEngine(*server_)); }

  grpc::Status Unary(const v1::GenerateRequest& req, v1::GenerateUnaryResponse* resp) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer key-a");
    return stub_->GenerateUnary(&ctx, req, resp);
  }
  // A prompt sampled at temperature 1, n = 4.
  static v1::GenerateRequest Sampled(const std::string& prompt, int n = 4) {
    v1::GenerateRequest r;
    r.set_prompt(prompt);
    r.mutable_sampling()->set_temperature(1);
    r.mutable_sampling()->set_n(n);
    r.mutable_stopping()->set_max_tokens(kMaxTokens);
    return r;
  }
  // A plain request still works (the server kept serving).
  void ExpectServing() {
    v1::GenerateUnaryResponse resp;
    ASSERT_TRUE(Unary(GreedyPrompt("still here", 3), &resp).ok());
    ASSERT_EQ(resp.completions_size(), 1);
    EXPECT_EQ(resp.completions(0).token_ids_size(), 3);
  }
  std::string Metrics() { return HttpGet(server_->metrics_port(), "/metrics"); }

  static Server* server_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};
Server* StructuredOutputTest::server_ = nullptr;

TEST_F(StructuredOutputTest, GrpcJsonSchemasValidateAndStop) {
  int completions = 0;
  for (const auto& [name, schema] : Schemas()) {
    SCOPED_TRACE(name);
    v1::GenerateRequest req = Sampled("Reply in JSON: " + name);
    req.mutable_response_format()->set_json_schema(schema);
    v1::GenerateUnaryResponse resp;
    const grpc::Status st = Unary(req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    ASSERT_EQ(resp.completions_size(), 4);
    for (const v1::Completion& c : resp.completions()) {
      EXPECT_EQ(c.finish_reason(), v1::FINISH_REASON_STOP) << c.text();
      EXPECT_EQ(Invalid(schema, c.text()), "") << c.text();
      ++completions;
    }
  }
  EXPECT_EQ(completions, 4 * static_cast<int>(Schemas().size()));
}

TEST_F(StructuredOutputTest, GrpcStreamedSchemaValidates) {
  const std::string& schema = Schemas()[0].second;
  v1::GenerateRequest req = Sampled("stream", 1);
  req.mutable_response_format()->set_json_schema(schema);
  StreamResult r = RunStream(*stub_, req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(Invalid(schema, r.text), "") << r.text;
  ASSERT_EQ(r.last.samples_size() > 0 ? r.last.samples(0).finish_reason() : -1,
            v1::FINISH_REASON_STOP);
}

TEST_F(StructuredOutputTest, GrpcRegexGrammarChoiceAndJsonObject) {
  {
    v1::GenerateRequest req = Sampled("regex");
    req.mutable_response_format()->set_regex("[a-z]{3,8}-[0-9]{2,4}");
    v1::GenerateUnaryResponse resp;
    ASSERT_TRUE(Unary(req, &resp).ok());
    for (const v1::Completion& c : resp.completions()) {
      EXPECT_TRUE(std::regex_match(c.text(), std::regex("[a-z]{3,8}-[0-9]{2,4}"))) << c.text();
      EXPECT_EQ(c.finish_reason(), v1::FINISH_REASON_STOP) << c.text();
    }
  }
  {
    v1::GenerateRequest req = Sampled("grammar");
    req.mutable_response_format()->set_grammar(R"g(# a sum of small numbers
root ::= "(" num ("+" num){0,3} ")"
num  ::= [0-9] | [1-9] [0-9]
)g");
    v1::GenerateUnaryResponse resp;
    const grpc::Status st = Unary(req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    const std::regex same(R"(\((?:[0-9]|[1-9][0-9])(?:\+(?:[0-9]|[1-9][0-9])){0,3}\))");
    for (const v1::Completion& c : resp.completions()) {
      EXPECT_TRUE(std::regex_match(c.text(), same)) << c.text();
      EXPECT_EQ(c.finish_reason(), v1::FINISH_REASON_STOP) << c.text();
    }
  }
  {
    v1::GenerateRequest req = Sampled("choice");
    for (const char* s : {"red", "green", "blue", "light blue"}) {
      req.mutable_response_format()->mutable_choice()->add_choices(s);
    }
    v1::GenerateUnaryResponse resp;
    ASSERT_TRUE(Unary(req, &resp).ok());
    for (const v1::Completion& c : resp.completions()) {
      EXPECT_TRUE(c.text() == "red" || c.text() == "green" || c.text() == "blue" ||
                  c.text() == "light blue")
          << c.text();
      EXPECT_EQ(c.finish_reason(), v1::FINISH_REASON_STOP) << c.text();
    }
  }
  {
    // Any object: unbounded, so only a finished one must parse; a cut one is a JSON prefix.
    v1::GenerateRequest req = Sampled("object");
    req.mutable_stopping()->set_max_tokens(60);
    req.mutable_response_format()->set_json_object(true);
    v1::GenerateUnaryResponse resp;
    ASSERT_TRUE(Unary(req, &resp).ok());
    for (const v1::Completion& c : resp.completions()) {
      ASSERT_FALSE(c.text().empty());
      EXPECT_EQ(c.text()[0], '{') << c.text();
      if (c.finish_reason() == v1::FINISH_REASON_STOP) {
        const json j = json::parse(c.text(), nullptr, false);
        EXPECT_TRUE(j.is_object()) << c.text();
      }
    }
  }
}

TEST_F(StructuredOutputTest, GrpcBadConstraintsAreInvalidArgumentNamingTheField) {
  struct Case {
    std::function<void(v1::ResponseFormat*)> set;
    std::string prefix;
    std::vector<std::string> contains;
  };
  const std::vector<Case> cases = {
      {[](auto* f) { f->set_json_schema("{\"type\": "); }, "response_format.json_schema: ", {}},
      {[](auto* f) {
         f->set_json_schema(
             R"({"type": "object", "properties": {"a": {"patternProperties": {"x": {}}}}})");
       },
       "response_format.json_schema: ",
       {"/properties/a", "patternProperties"}},
      {[](auto* f) { f->set_json_schema(R"({"$ref": "https://example.com/s.json"})"); },
       "response_format.json_schema: ",
       {"$ref"}},
      {[](auto* f) { f->set_json_schema(std::string(200000, '[') + std::string(200000, ']')); },
       "response_format.json_schema: ",
       {}},
      {[](auto* f) {
         std::string deep;
         for (int i = 0; i < 100000; ++i) deep += "{\"items\": ";
         deep += "{}" + std::string(100000, '}');
         f->set_json_schema(deep);
       },
       "response_format.json_schema: ",
       {"deeper"}},
      {[](auto* f) { f->set_regex("a(b"); }, "response_format.regex: ", {}},
      {[](auto* f) { f->set_grammar("start ::= \"a\""); }, "response_format.grammar: ", {"root"}},
      {[](auto* f) { f->mutable_choice(); }, "response_format.choice.choices: ", {"empty"}},
      {[](auto* f) { f->set_json_object(false); }, "response_format.json_object: ", {"true"}},
      {[](auto* f) {
         f->set_regex("a+");
         f->set_strict(true);
       },
       "response_format.strict: ",
       {"json_schema"}},
      {[](auto* f) {
         f->set_grammar("root ::= \"x\"");
         f->set_whitespace(v1::JSON_WHITESPACE_FLEXIBLE);
       },
       "response_format.whitespace: ",
       {}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(i);
    v1::GenerateRequest req = Sampled("bad", 1);
    cases[i].set(req.mutable_response_format());
    v1::GenerateUnaryResponse resp;
    const grpc::Status st = Unary(req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
    EXPECT_TRUE(absl::StartsWith(st.error_message(), cases[i].prefix)) << st.error_message();
    for (const std::string& c : cases[i].contains) {
      EXPECT_TRUE(absl::StrContains(st.error_message(), c)) << st.error_message();
    }
    // The same bad constraint again: the same answer (from the cache when it got that far).
    v1::GenerateUnaryResponse again;
    EXPECT_EQ(Unary(req, &again).error_message(), st.error_message());
  }
  ExpectServing();
}

TEST_F(StructuredOutputTest, HttpChatJsonSchemaValidatesAndStops) {
  for (const auto& [name, schema] : Schemas()) {
    SCOPED_TRACE(name);
    json body = {
        {"model", "tiny"},
        {"messages", {{{"role", "user"}, {"content", "Give me " + name}}}},
        {"temperature", 1},
        {"n", 4},
        {"max_tokens", kMaxTokens},
        {"response_format",
         {{"type", "json_schema"},
          {"json_schema", {{"name", name}, {"strict", true}, {"schema", json::parse(schema)}}}}}};
    HttpResult r = Post(server_->http_port(), "/v1/chat/completions", body);
    ASSERT_EQ(r.status, 200) << r.body;
    const json j = r.Json();
    ASSERT_EQ(j["choices"].size(), 4u) << r.body;
    for (const json& c : j["choices"]) {
      const std::string text = c["message"]["content"].get<std::string>();
      EXPECT_EQ(c["finish_reason"], "stop") << text;
      EXPECT_EQ(Invalid(schema, text), "") << text;
    }
  }
}

TEST_F(StructuredOutputTest, HttpVllmParamsAndStreaming) {
  const int port = server_->http_port();
  const std::string& schema = Schemas()[2].second;  // nested arrays
  {  // guided_json as an object on /v1/completions, n = 4
    HttpResult r = Post(port, "/v1/completions",
                        {{"prompt", "json"},
                         {"n", 4},
                         {"temperature", 1},
                         {"max_tokens", kMaxTokens},
                         {"guided_json", json::parse(schema)}});
    ASSERT_EQ(r.status, 200) << r.body;
    for (const json& c : r.Json()["choices"]) {
      EXPECT_EQ(c["finish_reason"], "stop") << c;
      EXPECT_EQ(Invalid(schema, c["text"].get<std::string>()), "") << c;
    }
  }
  {  // guided_json as text, streamed chat: the deltas concatenate to a valid instance
    HttpResult r = Post(port, "/v1/chat/completions",
                        {{"messages", {{{"role", "user"}, {"content", "json"}}}},
                         {"temperature", 1},
                         {"max_tokens", kMaxTokens},
                         {"stream", true},
                         {"guided_json", schema}});
    ASSERT_EQ(r.status, 200) << r.body;
    std::string text, finish;
    for (absl::string_view ev : absl::StrSplit(r.body, "\n\n")) {
      if (!absl::ConsumePrefix(&ev, "data: ") || ev == "[DONE]") continue;
      const json chunk = json::parse(ev);
      for (const json& c : chunk["choices"]) {
        if (c["delta"].contains("content")) text += c["delta"]["content"].get<std::string>();
        if (c["finish_reason"].is_string()) finish = c["finish_reason"];
      }
    }
    EXPECT_EQ(finish, "stop");
    EXPECT_EQ(Invalid(schema, text), "") << text;
  }
  {  // guided_regex, guided_choice, structured_outputs.{regex, choice, json}
    const std::vector<std::pair<json, std::regex>> cases = {
        {{{"guided_regex", "(yes|no) [0-9]{3}"}}, std::regex("(yes|no) [0-9]{3}")},
        {{{"guided_choice", {"alpha", "beta"}}}, std::regex("alpha|beta")},
        {{{"structured_outputs", {{"regex", "#[0-9a-f]{6}"}}}}, std::regex("#[0-9a-f]{6}")},
        {{{"structured_outputs", {{"choice", {"on", "off"}}}}}, std::regex("on|off")},
        {{{"structured_outputs", {{"json", {{"enum", {"x", "y"}}}}}}}, std::regex(R"("x"|"y")")},
    };
    for (const auto& [params, re] : cases) {
      SCOPED_TRACE(params.dump());
      json body = {{"prompt", "pick"}, {"n", 4}, {"temperature", 1}, {"max_tokens", 40}};
      body.update(params);
      HttpResult r = Post(port, "/v1/completions", body);
      ASSERT_EQ(r.status, 200) << r.body;
      for (const json& c : r.Json()["choices"]) {
        EXPECT_TRUE(std::regex_match(c["text"].get<std::string>(), re)) << c;
        EXPECT_EQ(c["finish_reason"], "stop") << c;
      }
    }
  }
  {  // json_object on chat: an object
    HttpResult r = Post(port, "/v1/chat/completions",
                        {{"messages", {{{"role", "user"}, {"content", "obj"}}}},
                         {"temperature", 0},
                         {"max_tokens", 60},
                         {"response_format", {{"type", "json_object"}}}});
    ASSERT_EQ(r.status, 200) << r.body;
    const std::string text = r.Json()["choices"][0]["message"]["content"];
    ASSERT_FALSE(text.empty());
    EXPECT_EQ(text[0], '{');
  }
}

TEST_F(StructuredOutputTest, HttpBadConstraintsAre400NamingTheParam) {
  const int port = server_->http_port();
  const json chat = {{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"max_tokens", 5}};
  const json bad_schema = {
      {"type", "object"},
      {"properties", {{"a", {{"patternProperties", {{"x", json::object()}}}}}}}};
  auto with = [&](json extra) {
    json b = chat;
    b.update(extra);
    return b;
  };
  ExpectHttpError(Post(port, "/v1/chat/completions",
                       with({{"response_format",
                              {{"type", "json_schema"},
                               {"json_schema", {{"name", "x"}, {"schema", bad_schema}}}}}})),
                  "response_format.json_schema.schema", "patternProperties");
  ExpectHttpError(Post(port, "/v1/chat/completions", with({{"guided_json", bad_schema}})),
                  "guided_json", "/properties/a");
  ExpectHttpError(Post(port, "/v1/completions",
                       {{"prompt", "x"}, {"structured_outputs", {{"json", bad_schema}}}}),
                  "structured_outputs.json", "patternProperties");
  ExpectHttpError(
      Post(port, "/v1/chat/completions", with({{"response_format", {{"type", "json_schema"}}}})),
      "response_format.json_schema", "is required");
  ExpectHttpError(
      Post(port, "/v1/chat/completions", with({{"response_format", {{"type", "yaml"}}}})),
      "response_format.type", "yaml");
  ExpectHttpError(
      Post(port, "/v1/chat/completions",
           with({{"response_format", {{"type", "json_object"}}}, {"guided_regex", "a+"}})),
      "guided_regex", "conflicts with response_format");
  ExpectHttpError(Post(port, "/v1/chat/completions",
                       with({{"structured_outputs", {{"regex", "a"}, {"choice", {"b"}}}}})),
                  "structured_outputs.choice", "conflicts with structured_outputs.regex");
  ExpectHttpError(Post(port, "/v1/chat/completions", with({{"guided_choice", "a"}})),
                  "guided_choice", "must be an array of strings");
  ExpectHttpError(Post(port, "/v1/chat/completions", with({{"guided_choice", json::array()}})),
                  "guided_choice", "must not be empty");
  ExpectHttpError(Post(port, "/v1/chat/completions", with({{"guided_regex", "a(b"}})),
                  "guided_regex", "");
  ExpectHttpError(Post(port, "/v1/chat/completions", with({{"guided_grammar", "x ::= \"a\""}})),
                  "guided_grammar", "root");
  // {type: text} is no constraint at all.
  HttpResult ok = Post(port, "/v1/chat/completions",
                       with({{"response_format", {{"type", "text"}}}, {"guided_regex", "ab"}}));
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.Json()["choices"][0]["message"]["content"], "ab");
  ExpectServing();
}

TEST_F(StructuredOutputTest, CacheCompilesOnceUnderConcurrencyAndMetricsCount) {
  const std::string before = Metrics();
  // A schema no other test uses, sent by 8 clients at once, then once more.
  const std::string schema =
      R"({"type": "object", "properties": {"k": {"enum": ["cache-test"]}}, "required": ["k"]})";
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 8; ++i) {
    clients.emplace_back([&, i] {
      auto stub = Stub(server_->port());
      v1::GenerateRequest req = Sampled("c" + std::to_string(i), 1);
      // Equal up to whitespace: the cache keys on the canonical text.
      req.mutable_response_format()->set_json_schema(
          i % 2 ? schema : nlohmann::ordered_json::parse(schema).dump(2));
      grpc::ClientContext ctx;
      ctx.AddMetadata("authorization", "Bearer key-a");
      v1::GenerateUnaryResponse resp;
      if (stub->GenerateUnary(&ctx, req, &resp).ok() &&
          resp.completions(0).text() == R"({"k":"cache-test"})") {
        ++ok;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), 8);
  ASSERT_TRUE(WaitForIdleEngine(*server_));  // the last step's counters are published
  const std::string after = Metrics();
  EXPECT_EQ(MetricSum(after, "muse_grammar_cache_misses_total") -
                MetricSum(before, "muse_grammar_cache_misses_total"),
            1)
      << after;
  EXPECT_EQ(MetricSum(after, "muse_grammar_cache_hits_total") -
                MetricSum(before, "muse_grammar_cache_hits_total"),
            7);
  EXPECT_EQ(MetricSum(after, "muse_grammar_compiles_total") -
                MetricSum(before, "muse_grammar_compiles_total"),
            1);
  EXPECT_EQ(MetricSum(after, "muse_grammar_compile_seconds_count") -
                MetricSum(before, "muse_grammar_compile_seconds_count"),
            1);
  EXPECT_TRUE(absl::StrContains(after, "muse_grammar_compiles_total{kind=\"json_schema\","))
      << after;
  EXPECT_GE(MetricSum(after, "muse_grammar_cache_entries"), 1);
  // The engine's mask counters: every token of the 8 constrained completions was sampled under a
  // mask ({"k":"cache-test"} is several tokens, then EOS), and computing them took time.
  EXPECT_GE(
      MetricSum(after, "muse_token_masks_total") - MetricSum(before, "muse_token_masks_total"),
      8 * 3)
      << after;
  EXPECT_GT(MetricSum(after, "muse_token_mask_compute_seconds_total") -
                MetricSum(before, "muse_token_mask_compute_seconds_total"),
            0);
  EXPECT_GE(MetricSum(after, "muse_token_mask_wait_seconds_total") -
                MetricSum(before, "muse_token_mask_wait_seconds_total"),
            0);
  EXPECT_TRUE(absl::StrContains(after, "# TYPE muse_token_mask_wait_seconds_total counter\n"));
}

}  // namespace
}  // namespace muse::server
