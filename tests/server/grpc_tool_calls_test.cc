// Tool calls and the reasoning channel over gRPC end to end (issue 18): the real server in-process
// on muse-tiny (random weights, so only the structured-output grammar makes calls valid).
// tool_choice REQUIRED and a named function, n = 2, Generate and GenerateUnary: every call's
// arguments validate (valijson) against its tool's parameters_json, the finish reason is
// TOOL_CALLS, a streamed call's first fragment carries index, id and name with empty arguments and
// the fragments concatenate to the unary parse. tool_choice AUTO parses the model's own (Hermes)
// format; an assistant history with tool_calls and tool results renders through the template. The
// reasoning channel on the think-template model with a budget of 8. Bad tools / tool_choice /
// history are INVALID_ARGUMENT naming the field.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
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
#include "src/server/server.h"
#include "src/tokenizer/tokenizer.h"
#include "tests/server/test_util.h"

namespace muse::server {
namespace {

using namespace muse::server::testing;
using json = nlohmann::json;

constexpr int kMaxTokens = 400;  // every call below is short (bounded strings and integers)

// Draft 7 (valijson's draft); bounded so a random model always finishes within kMaxTokens.
const std::vector<std::pair<std::string, std::string>>& ToolDefs() {
  static const auto* t = new std::vector<std::pair<std::string, std::string>>{
      {"get_weather",
       R"({"type": "object", "additionalProperties": false,
           "properties": {"city": {"type": "string", "maxLength": 8}, "unit": {"enum": ["c", "f"]}},
           "required": ["city", "unit"]})"},
      {"add",
       R"({"type": "object", "additionalProperties": false,
           "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99},
                          "b": {"type": "integer", "minimum": 0, "maximum": 99}},
           "required": ["a", "b"]})"},
      {"ping", ""},  // takes nothing
  };
  return *t;
}

void AddTools(v1::GenerateRequest* r) {
  for (const auto& [name, params] : ToolDefs()) {
    v1::Tool* t = r->add_tools();
    t->set_type("function");
    t->set_name(name);
    t->set_parameters_json(params);
  }
}

json ParametersOf(const std::string& name) {
  for (const auto& [n, params] : ToolDefs()) {
    if (n == name) {
      return params.empty() ? json{{"type", "object"}, {"additionalProperties", false}}
                            : json::parse(params);
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

v1::GenerateRequest Chat(const std::string& user = "Call a tool.") {
  v1::GenerateRequest r;
  v1::ChatMessage* m = r.add_messages();
  m->set_role("user");
  m->add_content()->set_text(user);
  r.mutable_sampling()->set_temperature(1);
  r.mutable_sampling()->set_seed(42);
  r.mutable_stopping()->set_max_tokens(kMaxTokens);
  AddTools(&r);
  return r;
}

struct Call {
  std::string id, name, arguments;
};
// One sample as the client sees it at the end.
struct SampleOut {
  std::string text, reasoning;
  std::vector<Call> calls;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  std::vector<int32_t> ids;
  int reasoning_tokens = 0;
};
struct Result {
  grpc::Status status;
  std::map<int, SampleOut> samples;
};

Result Unary(v1::Inference::Stub& stub, const v1::GenerateRequest& req) {
  grpc::ClientContext ctx;
  v1::GenerateUnaryResponse resp;
  Result r;
  r.status = stub.GenerateUnary(&ctx, req, &resp);
  for (const v1::Completion& c : resp.completions()) {
    SampleOut& o = r.samples[c.index()];
    o.text = c.text();
    o.reasoning = c.reasoning();
    o.finish = c.finish_reason();
    o.ids.assign(c.token_ids().begin(), c.token_ids().end());
    for (int k = 0; k < c.tool_calls_size(); ++k) {
      const v1::ToolCall& t = c.tool_calls(k);
      EXPECT_EQ(t.index(), k);
      o.calls.push_back({t.id(), t.name(), t.arguments()});
    }
  }
  return r;
}

// Accumulates a stream the way a client does, checking each tool-call fragment's shape: a call's
// first fragment carries index (the next one), id, name and empty arguments; the later ones only
// index and argument text.
Result Stream(v1::Inference::Stub& stub, const v1::GenerateRequest& req) {
  grpc::ClientContext ctx;
  Result r;
  auto reader = stub.Generate(&ctx, req);
  v1::GenerateResponse resp;
  while (reader->Read(&resp)) {
    for (const v1::SampleDelta& s : resp.samples()) {
      SampleOut& o = r.samples[s.index()];
      o.text += s.text();
      o.reasoning += s.reasoning();
      o.ids.insert(o.ids.end(), s.token_ids().begin(), s.token_ids().end());
      o.reasoning_tokens = s.reasoning_tokens();
      if (s.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) o.finish = s.finish_reason();
      for (const v1::ToolCall& t : s.tool_calls()) {
        if (!t.id().empty()) {
          EXPECT_EQ(t.index(), static_cast<int>(o.calls.size())) << t.ShortDebugString();
          EXPECT_FALSE(t.name().empty()) << t.ShortDebugString();
          EXPECT_EQ(t.arguments(), "") << t.ShortDebugString();
          o.calls.push_back({t.id(), t.name(), ""});
        } else {
          EXPECT_TRUE(t.name().empty()) << t.ShortDebugString();
          if (t.index() < 0 || t.index() >= static_cast<int>(o.calls.size())) {
            ADD_FAILURE() << "fragment of a call that was not opened: " << t.ShortDebugString();
            continue;
          }
          o.calls[t.index()].arguments += t.arguments();
        }
      }
    }
  }
  r.status = reader->Finish();
  return r;
}

// Every sample made valid calls (of `only` when set), no text, and finished with TOOL_CALLS.
void ExpectValidCalls(const Result& r, size_t n, const std::string& only = "") {
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_EQ(r.samples.size(), n);
  for (const auto& [index, s] : r.samples) {
    SCOPED_TRACE(index);
    EXPECT_EQ(s.finish, v1::FINISH_REASON_TOOL_CALLS);
    EXPECT_EQ(s.text, "");
    EXPECT_EQ(s.reasoning, "");
    ASSERT_FALSE(s.calls.empty());
    for (const Call& call : s.calls) {
      EXPECT_TRUE(absl::StartsWith(call.id, "call_") && call.id.size() == 29) << call.id;
      if (!only.empty()) {
        EXPECT_EQ(call.name, only);
      }
      const json params = ParametersOf(call.name);
      ASSERT_FALSE(params.is_null()) << "unknown tool " << call.name;
      EXPECT_EQ(Invalid(params, call.arguments), "") << call.name << " " << call.arguments;
    }
  }
}

// Same seed: the streamed fragments accumulate to the unary calls (ids are per request).
void ExpectSameCalls(const Result& streamed, const Result& unary) {
  ASSERT_EQ(streamed.samples.size(), unary.samples.size());
  for (const auto& [index, u] : unary.samples) {
    const SampleOut& s = streamed.samples.at(index);
    EXPECT_EQ(s.ids, u.ids) << index;
    ASSERT_EQ(s.calls.size(), u.calls.size()) << index;
    for (size_t k = 0; k < u.calls.size(); ++k) {
      EXPECT_EQ(s.calls[k].name, u.calls[k].name);
      EXPECT_EQ(s.calls[k].arguments, u.calls[k].arguments);
    }
    EXPECT_EQ(s.text, u.text);
    EXPECT_EQ(s.finish, u.finish);
  }
}

ServerOptions TinyOptions(const std::string& dir) {
  ServerOptions o;
  o.model_dir = dir;
  o.served_model_name = "tiny";
  o.host = "127.0.0.1";
  o.port = 0;
  o.http_port = 0;  // off
  o.metrics_port = -1;
  o.threads = 1;
  o.num_kv_blocks = 512;
  o.max_num_seqs = 16;
  o.no_auth = true;
  o.seed = 1;
  return o;
}

class GrpcToolCallsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto s = Server::Start(TinyOptions(TinyModelDir()));
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

  static Server* server_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};
Server* GrpcToolCallsTest::server_ = nullptr;

TEST_F(GrpcToolCallsTest, RequiredCallsValidateStreamedAndUnary) {
  v1::GenerateRequest req = Chat();
  req.mutable_tool_choice()->set_mode(v1::TOOL_CHOICE_MODE_REQUIRED);
  req.mutable_sampling()->set_n(2);
  const Result unary = Unary(*stub_, req);
  ExpectValidCalls(unary, 2);
  const Result streamed = Stream(*stub_, req);
  ExpectValidCalls(streamed, 2);
  ExpectSameCalls(streamed, unary);
}

TEST_F(GrpcToolCallsTest, NamedFunctionCallsValidateStreamedAndUnary) {
  for (const char* name : {"add", "get_weather", "ping"}) {
    SCOPED_TRACE(name);
    v1::GenerateRequest req = Chat();
    req.mutable_tool_choice()->set_function_name(name);
    req.mutable_sampling()->set_n(2);
    const Result unary = Unary(*stub_, req);
    ExpectValidCalls(unary, 2, name);
    const Result streamed = Stream(*stub_, req);
    ExpectValidCalls(streamed, 2, name);
    ExpectSameCalls(streamed, unary);
    for (const auto& [index, s] : unary.samples) ASSERT_EQ(s.calls.size(), 1u) << index;
    if (std::string(name) == "ping") {  // no parameters: an empty object, kept as written
      EXPECT_EQ(unary.samples.at(0).calls[0].arguments, "{}");
    }
  }
}

TEST_F(GrpcToolCallsTest, ParallelToolCallsFalseMakesOneCall) {
  v1::GenerateRequest req = Chat();
  req.mutable_tool_choice()->set_mode(v1::TOOL_CHOICE_MODE_REQUIRED);
  req.set_parallel_tool_calls(false);
  req.mutable_sampling()->set_n(2);
  const Result r = Unary(*stub_, req);
  ExpectValidCalls(r, 2);
  for (const auto& [index, s] : r.samples) EXPECT_EQ(s.calls.size(), 1u) << index;
}

TEST_F(GrpcToolCallsTest, ToolChoiceNoneAnswersWithText) {
  v1::GenerateRequest req = Chat();
  req.mutable_tool_choice()->set_mode(v1::TOOL_CHOICE_MODE_NONE);
  req.mutable_stopping()->set_max_tokens(8);
  req.mutable_stopping()->set_ignore_eos(true);
  const Result r = Unary(*stub_, req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  const SampleOut& s = r.samples.at(0);
  EXPECT_TRUE(s.calls.empty());
  EXPECT_FALSE(s.text.empty());
  EXPECT_EQ(s.finish, v1::FINISH_REASON_LENGTH);
}

TEST_F(GrpcToolCallsTest, BadToolsToolChoiceAndHistoryAreInvalidArgumentNamingTheField) {
  struct Case {
    std::string name;
    std::function<void(v1::GenerateRequest*)> mutate;
    std::string field;  // the message starts with it
  };
  const std::vector<Case> cases = {
      {"tool without a name", [](auto* r) { r->mutable_tools(1)->clear_name(); },
       "tools[1].name: "},
      {"repeated name", [](auto* r) { r->mutable_tools(2)->set_name("add"); }, "tools[2].name: "},
      {"parameters not a schema",
       [](auto* r) { r->mutable_tools(0)->set_parameters_json(R"("object")"); },
       "tools[0].parameters_json: must be a JSON Schema object"},
      {"parameters not JSON", [](auto* r) { r->mutable_tools(0)->set_parameters_json("{oops"); },
       "tools[0].parameters_json: is not valid JSON"},
      {"type", [](auto* r) { r->mutable_tools(0)->set_type("retrieval"); }, "tools[0].type: "},
      {"unknown function", [](auto* r) { r->mutable_tool_choice()->set_function_name("nope"); },
       "tool_choice.function_name: \"nope\" is not one of the tools"},
      {"required without tools",
       [](auto* r) {
         r->clear_tools();
         r->mutable_tool_choice()->set_mode(v1::TOOL_CHOICE_MODE_REQUIRED);
       },
       "tool_choice.mode: is REQUIRED but no tools"},
      {"named without tools",
       [](auto* r) {
         r->clear_tools();
         r->mutable_tool_choice()->set_function_name("add");
       },
       "tool_choice.function_name: "},
      {"forced with response_format",
       [](auto* r) {
         r->mutable_tool_choice()->set_mode(v1::TOOL_CHOICE_MODE_REQUIRED);
         r->mutable_response_format()->set_json_object(true);
       },
       "tool_choice.mode: a forced tool call conflicts with response_format"},
      {"forced with a prompt",
       [](auto* r) {
         r->clear_messages();
         r->set_prompt("hello");
         r->mutable_tool_choice()->set_mode(v1::TOOL_CHOICE_MODE_REQUIRED);
       },
       "tool_choice.mode: a forced tool call needs messages"},
      {"unknown mode",
       [](auto* r) { r->mutable_tool_choice()->set_mode(static_cast<v1::ToolChoiceMode>(9)); },
       "tool_choice.mode: "},
      {"schema the grammar refuses (named)",
       [](auto* r) {
         r->mutable_tools(1)->set_parameters_json(
             R"({"type": "object", "properties": {"a": {"type": 5}}})");
         r->mutable_tool_choice()->set_function_name("add");
       },
       "tools[1].parameters_json: "},
      {"history call on a user message",
       [](auto* r) {
         v1::ToolCall* c = r->mutable_messages(0)->add_tool_calls();
         c->set_id("call_1");
         c->set_name("add");
       },
       "messages[0].tool_calls: only assistant messages"},
      {"history call arguments not JSON",
       [](auto* r) {
         v1::ChatMessage* m = r->add_messages();
         m->set_role("assistant");
         v1::ToolCall* c = m->add_tool_calls();
         c->set_id("call_1");
         c->set_name("add");
         c->set_arguments("{\"a\": ");
       },
       "messages[1].tool_calls[0].arguments: is not valid JSON"},
      {"history call without a name",
       [](auto* r) {
         v1::ChatMessage* m = r->add_messages();
         m->set_role("assistant");
         m->add_tool_calls()->set_id("call_1");
       },
       "messages[1].tool_calls[0].name: "},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::GenerateRequest req = Chat();
    req.mutable_stopping()->set_max_tokens(4);
    c.mutate(&req);
    const Result u = Unary(*stub_, req);
    EXPECT_EQ(u.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << u.status.error_message();
    EXPECT_TRUE(absl::StartsWith(u.status.error_message(), c.field)) << u.status.error_message();
    const Result s = Stream(*stub_, req);
    EXPECT_EQ(s.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << s.status.error_message();
    EXPECT_TRUE(absl::StartsWith(s.status.error_message(), c.field)) << s.status.error_message();
  }
  // Still serving, tool calls included.
  v1::GenerateRequest ok = Chat();
  ok.mutable_tool_choice()->set_mode(v1::TOOL_CHOICE_MODE_REQUIRED);
  ExpectValidCalls(Unary(*stub_, ok), 1);
}

// muse-tiny with a Qwen2.5-style template (tools in the system turn, assistant tool_calls as
// <tool_call> JSON, tool results as <tool_response>): --tool-call-parser auto picks hermes.
std::string HermesModelDir() {
  static const std::string dir = [] {
    namespace fs = std::filesystem;
    const fs::path d =
        fs::temp_directory_path() / ("muse_grpc_hermes_" + std::to_string(::getpid()));
    fs::create_directories(d);
    for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"}) {
      fs::copy_file(fs::path(TinyModelDir()) / f, d / f, fs::copy_options::overwrite_existing);
    }
    std::ifstream in(fs::path(TinyModelDir()) / "tokenizer_config.json");
    json cfg = json::parse(in);
    cfg["chat_template"] =
        "{%- if tools %}<|start_header_id|>system<|end_header_id|>\n\n# Tools\n<tools>"
        "{%- for t in tools %}\n{{ t | tojson }}{%- endfor %}\n</tools><|eot_id|>{%- endif %}"
        "{%- for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n"
        "{%- if m.role == 'tool' %}<tool_response>\n{{ m.content }}\n</tool_response>"
        "{%- else %}{{ m.content }}{%- endif %}"
        "{%- if m.tool_calls %}{%- for c in m.tool_calls %}\n<tool_call>\n{\"name\": \""
        "{{ c.function.name }}\", \"arguments\": {{ c.function.arguments | tojson }}}\n"
        "</tool_call>{%- endfor %}{%- endif %}<|eot_id|>{%- endfor %}"
        "{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n"
        "{%- endif %}";
    std::ofstream(d / "tokenizer_config.json") << cfg.dump();
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(fs::temp_directory_path() / ("muse_grpc_hermes_" + std::to_string(::getpid())),
                     ec);
    });
    return d.string();
  }();
  return dir;
}

// tool_choice AUTO: the model's own format. A choice constraint makes the random model write
// exactly the Hermes text; the tools still reach the template.
TEST(GrpcModelFormatToolCallsTest, HermesCallsParsedStreamedAndUnaryAndHistoryRoundTrips) {
  auto server = Server::Start(TinyOptions(HermesModelDir()));
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = Stub((*server)->port());
  const std::string call =
      "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": [2, "
      "\"}\"]}}\n</tool_call>";
  for (const std::string& prefix : {std::string(), std::string("Let me add. ")}) {
    SCOPED_TRACE(prefix);
    v1::GenerateRequest req = Chat("add");
    req.mutable_tool_choice()->set_mode(v1::TOOL_CHOICE_MODE_AUTO);
    req.mutable_response_format()->mutable_choice()->add_choices(prefix + call + "\n" + call);
    const Result unary = Unary(*stub, req);
    ASSERT_TRUE(unary.status.ok()) << unary.status.error_message();
    const SampleOut& u = unary.samples.at(0);
    EXPECT_EQ(u.finish, v1::FINISH_REASON_TOOL_CALLS);
    EXPECT_EQ(u.text, prefix);
    ASSERT_EQ(u.calls.size(), 2u);
    for (const Call& k : u.calls) {
      EXPECT_EQ(k.name, "add");
      EXPECT_EQ(k.arguments, R"({"a": 1, "b": [2, "}"]})");  // raw, as written
      EXPECT_TRUE(absl::StartsWith(k.id, "call_")) << k.id;
    }
    EXPECT_NE(u.calls[0].id, u.calls[1].id);
    const Result streamed = Stream(*stub, req);
    ASSERT_TRUE(streamed.status.ok()) << streamed.status.error_message();
    ExpectSameCalls(streamed, unary);
    // parallel_tool_calls false: the first call only (later ones dropped, not made content).
    req.set_parallel_tool_calls(false);
    for (const Result& one : {Unary(*stub, req), Stream(*stub, req)}) {
      ASSERT_TRUE(one.status.ok()) << one.status.error_message();
      const SampleOut& o = one.samples.at(0);
      ASSERT_EQ(o.calls.size(), 1u);
      EXPECT_EQ(o.calls[0].arguments, R"({"a": 1, "b": [2, "}"]})");
      EXPECT_EQ(o.text, prefix);
      EXPECT_EQ(o.finish, v1::FINISH_REASON_TOOL_CALLS);
    }
  }
  // The calls and their results go back as history: the template renders them (arguments as the
  // parsed object), and the request runs.
  v1::TokenizeRequest tok;
  v1::ChatMessage* m = tok.add_messages();
  m->set_role("user");
  m->add_content()->set_text("add 1 and 2");
  m = tok.add_messages();
  m->set_role("assistant");
  v1::ToolCall* c = m->add_tool_calls();
  c->set_id("call_abc");
  c->set_name("add");
  c->set_arguments(R"({"a": 1, "b": 2})");
  m = tok.add_messages();
  m->set_role("tool");
  m->set_tool_call_id("call_abc");
  m->add_content()->set_text("3");
  grpc::ClientContext ctx;
  v1::TokenizeResponse tr;
  ASSERT_TRUE(stub->Tokenize(&ctx, tok, &tr).ok());
  auto tokenizer = tokenizer::Tokenizer::FromDirectory(HermesModelDir());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const std::vector<int32_t> ids(tr.token_ids().begin(), tr.token_ids().end());
  auto text = (*tokenizer)->Decode(ids, /*skip_special_tokens=*/false);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_TRUE(absl::StrContains(
      *text, "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>"))
      << *text;
  EXPECT_TRUE(absl::StrContains(*text, "<tool_response>\n3\n</tool_response>")) << *text;

  v1::GenerateRequest req = Chat("add 1 and 2");
  *req.mutable_messages() = tok.messages();
  req.mutable_stopping()->set_max_tokens(4);
  const Result r = Unary(*stub, req);
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
}

// The reasoning channel on the think-template variant of muse-tiny (written by the real
// `muse-make-model --think-template`, as scripts/setup.sh makes models/muse-tiny-think): the
// prompt opens "<think>\n", so the output starts as reasoning; a budget of 8 forces "</think>\n\n"
// after exactly 8 tokens, which are the reasoning channel; the rest is content.
std::string ThinkModelDir() {
  static const std::string dir = [] {
    namespace fs = std::filesystem;
    fs::path d = fs::temp_directory_path() / ("muse_grpc_think_" + std::to_string(::getpid()));
    const std::string cmd =
        std::string(MUSE_BIN_DIR) +
        "/muse-make-model --preset llava-tiny --seed 0 --think-template --out " + d.string() +
        " --tokenizer " + kTokenizerDir + " > /dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(fs::temp_directory_path() / ("muse_grpc_think_" + std::to_string(::getpid())),
                     ec);
    });
    return d.string();
  }();
  return dir;
}

TEST(GrpcReasoningTest, BudgetEightIsEightReasoningTokensThenContent) {
  ServerOptions o = TinyOptions(ThinkModelDir());
  o.served_model_name = "think";
  o.num_kv_blocks = 128;
  o.max_num_seqs = 8;
  o.seed = 3;
  auto server = Server::Start(o);
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = Stub((*server)->port());
  auto tokenizer = tokenizer::Tokenizer::FromDirectory(ThinkModelDir());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();

  v1::GenerateRequest req;
  v1::ChatMessage* m = req.add_messages();
  m->set_role("user");
  m->add_content()->set_text("Why is the sky blue?");
  req.mutable_sampling()->set_temperature(0);
  req.mutable_sampling()->set_thinking_token_budget(8);
  req.mutable_stopping()->set_max_tokens(30);
  req.mutable_stopping()->set_ignore_eos(true);
  const Result streamed = Stream(*stub, req);
  ASSERT_TRUE(streamed.status.ok()) << streamed.status.error_message();
  const SampleOut& s = streamed.samples.at(0);
  ASSERT_EQ(s.ids.size(), 30u);
  EXPECT_EQ(s.reasoning_tokens, 8);
  // The reasoning channel is exactly the first 8 tokens' text; the content is what follows the
  // forced "</think>", and nothing is lost.
  const std::vector<int32_t> first8(s.ids.begin(), s.ids.begin() + 8);
  auto reasoning = (*tokenizer)->Decode(first8, /*skip_special_tokens=*/true);
  ASSERT_TRUE(reasoning.ok());
  EXPECT_FALSE(s.reasoning.empty());
  EXPECT_EQ(s.reasoning, *reasoning);
  auto all = (*tokenizer)->Decode(s.ids, /*skip_special_tokens=*/true);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(s.reasoning + "</think>" + s.text, *all);
  EXPECT_FALSE(absl::StrContains(s.text, "think>")) << s.text;
  EXPECT_FALSE(s.text.empty());
  EXPECT_TRUE(s.calls.empty());
  EXPECT_EQ(s.finish, v1::FINISH_REASON_LENGTH);

  const Result unary = Unary(*stub, req);
  ASSERT_TRUE(unary.status.ok()) << unary.status.error_message();
  const SampleOut& u = unary.samples.at(0);
  EXPECT_EQ(u.ids, s.ids);
  EXPECT_EQ(u.reasoning, s.reasoning);
  EXPECT_EQ(u.text, s.text);
}

}  // namespace
}  // namespace muse::server
