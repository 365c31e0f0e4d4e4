#include "src/server/openai_request.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "src/server/auth.h"
#include "src/server/openai_json.h"
#include "src/server/openai_response_format.h"

namespace muse::server {
namespace {

using json = nlohmann::ordered_json;  // key order kept (a json_schema's property order matters)
using openai_json::AsBool;
using openai_json::AsString;
using openai_json::Bad;
using openai_json::Field;
using openai_json::WrongType;

constexpr int kMaxPrompts = 128;  // entries of a /v1/completions prompt array

absl::Status AsInt64(const json& j, const std::string& param, int64_t* out) {
  if (j.is_number_integer()) {
    if (j.is_number_unsigned() && j.get<uint64_t>() > uint64_t{INT64_MAX}) {
      return Bad(param, "integer out of range");
    }
    *out = j.get<int64_t>();
    return absl::OkStatus();
  }
  if (j.is_number_float()) {
    const double d = j.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) {
      *out = static_cast<int64_t>(d);
      return absl::OkStatus();
    }
  }
  return WrongType(param, "an integer", j);
}

absl::Status AsInt32(const json& j, const std::string& param, int32_t* out) {
  int64_t v = 0;
  RETURN_IF_ERROR(AsInt64(j, param, &v));
  if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
    return Bad(param, absl::StrCat("integer ", v, " out of range"));
  }
  *out = static_cast<int32_t>(v);
  return absl::OkStatus();
}

absl::Status AsFloat(const json& j, const std::string& param, float* out) {
  if (!j.is_number()) return WrongType(param, "a number", j);
  const double d = j.get<double>();
  constexpr double kMax = std::numeric_limits<float>::max();
  // Out of float range: +-inf, which the core's range checks then name (a cast would be UB).
  *out = d > kMax    ? std::numeric_limits<float>::infinity()
         : d < -kMax ? -std::numeric_limits<float>::infinity()
                     : static_cast<float>(d);
  return absl::OkStatus();
}

// Records the path of the value being parsed, so a syntax or UTF-8 error names its field.
class PathSax {
 public:
  std::string path, error;

  bool null() { return Value(); }
  bool boolean(bool) { return Value(); }
  bool number_integer(json::number_integer_t) { return Value(); }
  bool number_unsigned(json::number_unsigned_t) { return Value(); }
  bool number_float(json::number_float_t, const std::string&) { return Value(); }
  bool string(std::string&) { return Value(); }
  bool binary(json::binary_t&) { return Value(); }
  bool start_object(size_t) {
    stack_.push_back({false, 0, ""});
    return true;
  }
  bool key(std::string& k) {
    stack_.back().key = k;
    return true;
  }
  bool end_object() {
    stack_.pop_back();
    return Value();
  }
  bool start_array(size_t) {
    stack_.push_back({true, 0, ""});
    return true;
  }
  bool end_array() {
    stack_.pop_back();
    return Value();
  }
  bool parse_error(size_t, const std::string&, const nlohmann::detail::exception& ex) {
    error = ex.what();
    for (const Frame& f : stack_) {
      if (f.array) {
        absl::StrAppend(&path, "[", f.index, "]");
      } else if (!f.key.empty()) {
        absl::StrAppend(&path, path.empty() ? "" : ".", f.key);
      }
    }
    return false;
  }

 private:
  struct Frame {
    bool array;
    int64_t index;
    std::string key;
  };
  bool Value() {
    if (!stack_.empty() && stack_.back().array) ++stack_.back().index;
    return true;
  }
  std::vector<Frame> stack_;
};

absl::StatusOr<json> ParseBody(std::string_view body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    PathSax sax;
    json::sax_parse(body, &sax, json::input_format_t::json, /*strict=*/true);
    std::string what = sax.error;
    if (size_t k = what.find("; last read"); k != std::string::npos) what.resize(k);
    if (size_t k = what.find("] "); k != std::string::npos) what = what.substr(k + 2);
    const bool utf8 = absl::StrContains(sax.error, "UTF-8");
    const std::string where = sax.path.empty() ? "body" : sax.path;
    return Bad(where, utf8 ? "invalid UTF-8" : absl::StrCat("invalid JSON (", what, ")"));
  }
  if (!j.is_object()) return WrongType("body", "a JSON object", j);
  return j;
}

// An assistant message's earlier calls: [{"id", "type": "function", "function": {"name",
// "arguments": "<JSON object text>"}}] -> ChatMessage.tool_calls (the core hands the template the
// arguments parsed, as vLLM does). Checked here so errors name OpenAI's fields.
absl::Status ParseHistoryToolCalls(const json& j, const std::string& field, v1::ChatMessage* cm) {
  const std::string tf = field + ".tool_calls";
  if (!j.is_array()) return WrongType(tf, "an array", j);
  if (!j.empty() && cm->role() != "assistant") {
    return Bad(tf, absl::StrCat("only assistant messages carry tool calls, this one is role '",
                                cm->role(), "'"));
  }
  for (size_t k = 0; k < j.size(); ++k) {
    const std::string cf = absl::StrCat(tf, "[", k, "]");
    const json& c = j[k];
    if (!c.is_object()) return WrongType(cf, "an object", c);
    v1::ToolCall* call = cm->add_tool_calls();
    call->set_index(static_cast<int32_t>(k));
    const json* id = Field(c, "id");
    if (id == nullptr) return Bad(cf + ".id", "is required");
    RETURN_IF_ERROR(AsString(*id, cf + ".id", call->mutable_id()));
    if (call->id().empty()) return Bad(cf + ".id", "must not be empty");
    std::string type = "function";
    if (const json* t = Field(c, "type")) RETURN_IF_ERROR(AsString(*t, cf + ".type", &type));
    if (type != "function") {
      return Bad(cf + ".type", absl::StrCat("must be function, got '", type, "'"));
    }
    const json* f = Field(c, "function");
    if (f == nullptr) return Bad(cf + ".function", "is required");
    if (!f->is_object()) return WrongType(cf + ".function", "an object", *f);
    const json* name = Field(*f, "name");
    if (name == nullptr) return Bad(cf + ".function.name", "is required");
    RETURN_IF_ERROR(AsString(*name, cf + ".function.name", call->mutable_name()));
    if (call->name().empty()) return Bad(cf + ".function.name", "must not be empty");
    const json* args = Field(*f, "arguments");
    if (args == nullptr) return Bad(cf + ".function.arguments", "is required");
    // OpenAI sends JSON text; an object is taken as well (what some clients send).
    if (args->is_object()) {
      call->set_arguments(args->dump(-1, ' ', false, json::error_handler_t::replace));
      continue;
    }
    RETURN_IF_ERROR(AsString(*args, cf + ".function.arguments", call->mutable_arguments()));
    if (call->arguments().empty()) continue;  // "" = no arguments ({})
    const json parsed = json::parse(call->arguments(), nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded()) return Bad(cf + ".function.arguments", "is not valid JSON");
    if (!parsed.is_object()) {
      return Bad(cf + ".function.arguments",
                 absl::StrCat("must be a JSON object, got ", parsed.type_name()));
    }
  }
  return absl::OkStatus();
}

// messages[] -> v1 ChatMessage list: text parts, image_url parts (data: URIs; the core rejects
// remote URLs), input_audio (OpenAI) and audio_url (vLLM) parts, name, tool_call_id. "developer" is
// OpenAI's newer name for the system role.
absl::Status ParseMessages(const json& j,
                           google::protobuf::RepeatedPtrField<v1::ChatMessage>* out) {
  if (!j.is_array()) return WrongType("messages", "an array", j);
  if (j.empty()) return Bad("messages", "must not be empty");
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string field = absl::StrCat("messages[", i, "]");
    const json& m = j[i];
    if (!m.is_object()) return WrongType(field, "an object", m);
    v1::ChatMessage* cm = out->Add();
    const json* role = Field(m, "role");
    if (role == nullptr) return Bad(field + ".role", "is required");
    RETURN_IF_ERROR(AsString(*role, field + ".role", cm->mutable_role()));
    if (cm->role() == "developer") cm->set_role("system");
    if (const json* c = Field(m, "content")) {
      if (c->is_string()) {
        cm->add_content()->set_text(c->get<std::string>());
      } else if (c->is_array()) {
        for (size_t k = 0; k < c->size(); ++k) {
          const std::string pf = absl::StrCat(field, ".content[", k, "]");
          const json& p = (*c)[k];
          if (!p.is_object()) return WrongType(pf, "an object", p);
          std::string type;
          const json* t = Field(p, "type");
          if (t == nullptr) return Bad(pf + ".type", "is required");
          RETURN_IF_ERROR(AsString(*t, pf + ".type", &type));
          if (type == "text") {
            const json* text = Field(p, "text");
            if (text == nullptr) return Bad(pf + ".text", "is required");
            RETURN_IF_ERROR(AsString(*text, pf + ".text", cm->add_content()->mutable_text()));
          } else if (type == "image_url") {
            const json* iu = Field(p, "image_url");
            if (iu == nullptr) return Bad(pf + ".image_url", "is required");
            const json* url = iu->is_object() ? Field(*iu, "url") : iu;
            if (url == nullptr) return Bad(pf + ".image_url.url", "is required");
            RETURN_IF_ERROR(
                AsString(*url, pf + ".image_url.url", cm->add_content()->mutable_image_url()));
          } else if (type == "input_audio") {  // OpenAI: {data: base64, format: wav | mp3 | ...}
            const json* ia = Field(p, "input_audio");
            if (ia == nullptr) return Bad(pf + ".input_audio", "is required");
            if (!ia->is_object()) return WrongType(pf + ".input_audio", "an object", *ia);
            const json* data = Field(*ia, "data");
            if (data == nullptr) return Bad(pf + ".input_audio.data", "is required");
            std::string b64, format;
            RETURN_IF_ERROR(AsString(*data, pf + ".input_audio.data", &b64));
            const json* f = Field(*ia, "format");
            if (f == nullptr) return Bad(pf + ".input_audio.format", "is required");
            RETURN_IF_ERROR(AsString(*f, pf + ".input_audio.format", &format));
            // The decoder reads the container from the bytes; the format is only checked.
            if (format != "wav" && format != "mp3" && format != "flac" && format != "ogg" &&
                format != "opus") {
              return Bad(pf + ".input_audio.format",
                         absl::StrCat("'", format, "' is not one of wav, mp3, flac, ogg, opus"));
            }
            if (!absl::Base64Unescape(b64, cm->add_content()->mutable_audio())) {
              return Bad(pf + ".input_audio.data", "is not valid base64");
            }
          } else if (type == "audio_url") {  // vLLM: {audio_url: {url: "data:audio/...;base64,"}}
            const json* au = Field(p, "audio_url");
            if (au == nullptr) return Bad(pf + ".audio_url", "is required");
            const json* url = au->is_object() ? Field(*au, "url") : au;
            if (url == nullptr) return Bad(pf + ".audio_url.url", "is required");
            RETURN_IF_ERROR(
                AsString(*url, pf + ".audio_url.url", cm->add_content()->mutable_audio_url()));
          } else {
            return Bad(pf + ".type",
                       absl::StrCat("unsupported content part type '", type,
                                    "' (this server accepts text, image_url, input_audio and "
                                    "audio_url)"));
          }
        }
      } else {
        return WrongType(field + ".content", "a string or an array of content parts", *c);
      }
    }
    if (const json* name = Field(m, "name")) {
      RETURN_IF_ERROR(AsString(*name, field + ".name", cm->mutable_name()));
    }
    if (const json* id = Field(m, "tool_call_id")) {
      RETURN_IF_ERROR(AsString(*id, field + ".tool_call_id", cm->mutable_tool_call_id()));
    }
    if (const json* tc = Field(m, "tool_calls")) {
      RETURN_IF_ERROR(ParseHistoryToolCalls(*tc, field, cm));
    }
    // An earlier turn's reasoning, as this server returns it (`reasoning_content`) or under the
    // newer name `reasoning`; null is absent.
    for (const char* key : {"reasoning_content", "reasoning"}) {
      const json* rc = Field(m, key);
      if (rc == nullptr || rc->is_null()) continue;
      std::string text;
      RETURN_IF_ERROR(AsString(*rc, absl::StrCat(field, ".", key), &text));
      if (!cm->reasoning_content().empty() && cm->reasoning_content() != text) {
        return Bad(absl::StrCat(field, ".reasoning"),
                   "differs from reasoning_content (send one of them)");
      }
      cm->set_reasoning_content(text);
    }
  }
  return absl::OkStatus();
}

absl::Status ParseStop(const json& j, v1::StoppingCriteria* s) {
  if (j.is_string()) {
    s->add_stop(j.get<std::string>());
    return absl::OkStatus();
  }
  if (!j.is_array()) return WrongType("stop", "a string or an array of strings", j);
  for (size_t i = 0; i < j.size(); ++i) {
    RETURN_IF_ERROR(AsString(j[i], absl::StrCat("stop[", i, "]"), s->add_stop()));
  }
  return absl::OkStatus();
}

// The fields chat and completions share (sampling, stopping, vLLM's extras, priority).
absl::Status ParseCommon(const json& b, OpenAiRequest* r, v1::GenerateRequest* g) {
  v1::SamplingParams* s = g->mutable_sampling();
  v1::StoppingCriteria* st = g->mutable_stopping();
  if (const json* v = Field(b, "model")) RETURN_IF_ERROR(AsString(*v, "model", &r->model));
  g->set_model(r->model);
  struct FloatField {
    const char* name;
    void (v1::SamplingParams::*set)(float);
  };
  for (const FloatField& f :
       {FloatField{"temperature", &v1::SamplingParams::set_temperature},
        FloatField{"top_p", &v1::SamplingParams::set_top_p},
        FloatField{"min_p", &v1::SamplingParams::set_min_p},
        FloatField{"repetition_penalty", &v1::SamplingParams::set_repetition_penalty},
        FloatField{"presence_penalty", &v1::SamplingParams::set_presence_penalty},
        FloatField{"frequency_penalty", &v1::SamplingParams::set_frequency_penalty}}) {
    if (const json* v = Field(b, f.name)) {
      float x = 0;
      RETURN_IF_ERROR(AsFloat(*v, f.name, &x));
      (s->*f.set)(x);
    }
  }
  int32_t i32 = 0;
  if (const json* v = Field(b, "top_k")) {
    RETURN_IF_ERROR(AsInt32(*v, "top_k", &i32));
    s->set_top_k(i32);
  }
  if (const json* v = Field(b, "n")) {
    RETURN_IF_ERROR(AsInt32(*v, "n", &i32));
    s->set_n(i32);
    r->n = std::max(1, i32);
  }
  if (const json* v = Field(b, "seed")) {
    int64_t seed = 0;
    RETURN_IF_ERROR(AsInt64(*v, "seed", &seed));
    s->set_seed(static_cast<uint64_t>(seed));  // two's complement: negative seeds are distinct
  }
  if (const json* v = Field(b, "thinking_token_budget")) {  // vLLM's name; checked by the core
    RETURN_IF_ERROR(AsInt32(*v, "thinking_token_budget", &i32));
    s->set_thinking_token_budget(i32);
  }
  if (const json* v = Field(b, "logit_bias")) {
    if (!v->is_object()) return WrongType("logit_bias", "an object {token id: bias}", *v);
    for (const auto& [key, bias] : v->items()) {
      int32_t id = 0;
      if (!absl::SimpleAtoi(key, &id)) {
        return Bad("logit_bias", absl::StrCat("key '", key, "' is not a token id"));
      }
      float x = 0;
      RETURN_IF_ERROR(AsFloat(bias, "logit_bias", &x));
      (*s->mutable_logit_bias())[id] = x;
    }
  }
  // max_completion_tokens is OpenAI's current name; max_tokens the deprecated one.
  for (const char* name : {"max_tokens", "max_completion_tokens"}) {
    if (const json* v = Field(b, name)) {
      RETURN_IF_ERROR(AsInt32(*v, name, &i32));
      st->set_max_tokens(i32);
      r->max_tokens_param = name;
      r->max_tokens_set = true;
    }
  }
  if (const json* v = Field(b, "min_tokens")) {
    RETURN_IF_ERROR(AsInt32(*v, "min_tokens", &i32));
    st->set_min_tokens(i32);
  }
  if (const json* v = Field(b, "stop")) RETURN_IF_ERROR(ParseStop(*v, st));
  if (const json* v = Field(b, "stop_token_ids")) {
    if (!v->is_array()) return WrongType("stop_token_ids", "an array of integers", *v);
    for (size_t i = 0; i < v->size(); ++i) {
      RETURN_IF_ERROR(AsInt32((*v)[i], absl::StrCat("stop_token_ids[", i, "]"), &i32));
      st->add_stop_token_ids(i32);
    }
  }
  bool flag = false;
  if (const json* v = Field(b, "ignore_eos")) {
    RETURN_IF_ERROR(AsBool(*v, "ignore_eos", &flag));
    st->set_ignore_eos(flag);
  }
  if (const json* v = Field(b, "skip_special_tokens")) {
    RETURN_IF_ERROR(AsBool(*v, "skip_special_tokens", &flag));
    g->set_skip_special_tokens(flag);
  }
  // vLLM: an integer, lower = sooner. Here: < 0 interactive, 0 the key's class, > 0 batch; or
  // the class by name.
  if (const json* v = Field(b, "priority")) {
    if (v->is_string()) {
      const std::string p = v->get<std::string>();
      if (p == "interactive") {
        g->set_priority(v1::PRIORITY_INTERACTIVE);
      } else if (p == "batch") {
        g->set_priority(v1::PRIORITY_BATCH);
      } else {
        return Bad("priority",
                   absl::StrCat("must be an integer, interactive or batch, got '", p, "'"));
      }
    } else {
      int64_t p = 0;
      RETURN_IF_ERROR(AsInt64(*v, "priority", &p));
      g->set_priority(p < 0   ? v1::PRIORITY_INTERACTIVE
                      : p > 0 ? v1::PRIORITY_BATCH
                              : v1::PRIORITY_UNSPECIFIED);
    }
  }
  if (const json* v = Field(b, "user")) {
    std::string user;
    RETURN_IF_ERROR(AsString(*v, "user", &user));
  }
  if (const json* v = Field(b, "stream")) RETURN_IF_ERROR(AsBool(*v, "stream", &r->stream));
  if (const json* v = Field(b, "stream_options")) {
    if (!v->is_object()) return WrongType("stream_options", "an object", *v);
    if (!r->stream) return Bad("stream_options", "only allowed when stream is true");
    if (const json* u = Field(*v, "include_usage")) {
      RETURN_IF_ERROR(AsBool(*u, "stream_options.include_usage", &r->include_usage));
    }
  }
  RETURN_IF_ERROR(ParseResponseFormat(b, g->mutable_response_format(), &r->constraint));
  for (const char* name : {"functions", "function_call"}) {
    if (Field(b, name) != nullptr) {
      return Bad(name, "the deprecated function calling is not supported (use tools)");
    }
  }
  return absl::OkStatus();
}

// tools: [{"type": "function", "function": {"name", "description"?, "parameters"?, "strict"?}}]
absl::Status ParseTools(const json& j, OpenAiRequest* r, v1::GenerateRequest* g) {
  if (!j.is_array()) return WrongType("tools", "an array", j);
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string field = absl::StrCat("tools[", i, "]");
    const json& t = j[i];
    if (!t.is_object()) return WrongType(field, "an object", t);
    std::string type = "function";
    if (const json* v = Field(t, "type")) RETURN_IF_ERROR(AsString(*v, field + ".type", &type));
    if (type != "function") {
      return Bad(field + ".type", absl::StrCat("must be function, got '", type, "'"));
    }
    const json* f = Field(t, "function");
    if (f == nullptr) return Bad(field + ".function", "is required");
    if (!f->is_object()) return WrongType(field + ".function", "an object", *f);
    chat::ToolSpec spec;
    v1::Tool* tool = g->add_tools();
    tool->set_type("function");
    const json* name = Field(*f, "name");
    if (name == nullptr) return Bad(field + ".function.name", "is required");
    RETURN_IF_ERROR(AsString(*name, field + ".function.name", &spec.name));
    if (spec.name.empty()) return Bad(field + ".function.name", "must not be empty");
    for (size_t k = 0; k < i; ++k) {
      if (r->tools[k].name == spec.name) {
        return Bad(field + ".function.name",
                   absl::StrCat("\"", spec.name, "\" appears twice (also tools[", k, "])"));
      }
    }
    tool->set_name(spec.name);
    if (const json* d = Field(*f, "description")) {
      RETURN_IF_ERROR(AsString(*d, field + ".function.description", tool->mutable_description()));
    }
    if (const json* s = Field(*f, "strict")) {
      bool strict = false;  // forced calls are always enforced; auto ones never
      RETURN_IF_ERROR(AsBool(*s, field + ".function.strict", &strict));
    }
    if (const json* p = Field(*f, "parameters"); p != nullptr && !p->is_null()) {
      if (!p->is_object()) {
        return WrongType(field + ".function.parameters", "a JSON Schema object", *p);
      }
      spec.parameters = p->dump(-1, ' ', false, json::error_handler_t::replace);
      tool->set_parameters_json(spec.parameters);
    }
    r->tools.push_back(std::move(spec));
  }
  return absl::OkStatus();
}

// tool_choice and parallel_tool_calls; "required" / a named function -> the forced call's schema
// as the request's structured-output constraint.
absl::Status ParseToolChoice(const json& b, OpenAiRequest* r, v1::GenerateRequest* g) {
  using TC = OpenAiRequest::ToolChoice;
  r->tool_choice = r->tools.empty() ? TC::kNone : TC::kAuto;
  if (const json* v = Field(b, "parallel_tool_calls")) {
    RETURN_IF_ERROR(AsBool(*v, "parallel_tool_calls", &r->parallel_tool_calls));
  }
  const json* v = Field(b, "tool_choice");
  if (v == nullptr || v->is_null()) return absl::OkStatus();
  if (v->is_string()) {
    const std::string c = v->get<std::string>();
    if (c == "none") {
      r->tool_choice = TC::kNone;
    } else if (c == "auto") {
      r->tool_choice = r->tools.empty() ? TC::kNone : TC::kAuto;
    } else if (c == "required") {
      if (r->tools.empty()) return Bad("tool_choice", "is required but no tools are given");
      r->tool_choice = TC::kRequired;
    } else {
      return Bad("tool_choice",
                 absl::StrCat("must be none, auto, required or {\"type\": \"function\", "
                              "\"function\": {\"name\": ...}}, got '",
                              c, "'"));
    }
  } else if (v->is_object()) {
    std::string type;
    const json* t = Field(*v, "type");
    if (t == nullptr) return Bad("tool_choice.type", "is required");
    RETURN_IF_ERROR(AsString(*t, "tool_choice.type", &type));
    if (type != "function") {
      return Bad("tool_choice.type", absl::StrCat("must be function, got '", type, "'"));
    }
    const json* f = Field(*v, "function");
    if (f == nullptr) return Bad("tool_choice.function", "is required");
    if (!f->is_object()) return WrongType("tool_choice.function", "an object", *f);
    const json* name = Field(*f, "name");
    if (name == nullptr) return Bad("tool_choice.function.name", "is required");
    RETURN_IF_ERROR(AsString(*name, "tool_choice.function.name", &r->tool_choice_name));
    if (r->tools.empty()) {
      return Bad("tool_choice.function.name",
                 absl::StrCat("names \"", r->tool_choice_name, "\" but no tools are given"));
    }
    r->tool_choice = TC::kNamed;
  } else {
    return WrongType("tool_choice", "a string or an object", *v);
  }
  if (r->tool_choice != TC::kRequired && r->tool_choice != TC::kNamed) return absl::OkStatus();
  if (!r->constraint.param.empty()) {
    return Bad("tool_choice",
               absl::StrCat("a forced tool call conflicts with ", r->constraint.param,
                            " (the call is itself a structured-output constraint)"));
  }
  std::string schema;
  if (r->tool_choice == TC::kRequired) {
    ASSIGN_OR_RETURN(schema, chat::RequiredToolCallSchema(r->tools, r->parallel_tool_calls));
    r->constraint = {"tools", "tools"};
  } else {
    ASSIGN_OR_RETURN(schema, chat::NamedToolCallSchema(r->tools, r->tool_choice_name));
    for (size_t i = 0; i < r->tools.size(); ++i) {
      if (r->tools[i].name == r->tool_choice_name) {
        const std::string p = absl::StrCat("tools[", i, "].function.parameters");
        r->constraint = {p, p};
      }
    }
  }
  g->mutable_response_format()->set_json_schema(std::move(schema));
  g->mutable_response_format()->set_strict(true);
  return absl::OkStatus();
}

absl::Status ParseChat(const json& b, OpenAiRequest* r) {
  v1::GenerateRequest g;
  RETURN_IF_ERROR(ParseCommon(b, r, &g));
  if (const json* v = Field(b, "tools"); v != nullptr && !v->is_null()) {
    RETURN_IF_ERROR(ParseTools(*v, r, &g));
  }
  RETURN_IF_ERROR(ParseToolChoice(b, r, &g));
  const json* msgs = Field(b, "messages");
  if (msgs == nullptr) return Bad("messages", "is required");
  RETURN_IF_ERROR(ParseMessages(*msgs, g.mutable_messages()));
  if (const json* v = Field(b, "add_generation_prompt")) {
    bool gen = true;
    RETURN_IF_ERROR(AsBool(*v, "add_generation_prompt", &gen));
    g.set_add_generation_prompt(gen);
  }
  if (const json* v = Field(b, "logprobs")) RETURN_IF_ERROR(AsBool(*v, "logprobs", &r->logprobs));
  g.mutable_sampling()->set_logprobs(r->logprobs);
  if (const json* v = Field(b, "top_logprobs")) {
    int32_t k = 0;
    RETURN_IF_ERROR(AsInt32(*v, "top_logprobs", &k));
    g.mutable_sampling()->set_top_logprobs(k);
  }
  r->prompts.push_back(std::move(g));
  return absl::OkStatus();
}

absl::Status ParseCompletions(const json& b, OpenAiRequest* r) {
  v1::GenerateRequest g;
  RETURN_IF_ERROR(ParseCommon(b, r, &g));
  for (const char* name : {"tools", "tool_choice", "parallel_tool_calls"}) {
    if (Field(b, name) != nullptr) return Bad(name, "only /v1/chat/completions takes tools");
  }
  // Legacy logprobs: an integer, how many alternatives per token (0 = the sampled one only).
  if (const json* v = Field(b, "logprobs")) {
    int32_t k = 0;
    RETURN_IF_ERROR(AsInt32(*v, "logprobs", &k));
    r->logprobs = true;
    g.mutable_sampling()->set_logprobs(true);
    g.mutable_sampling()->set_top_logprobs(k);
  }
  if (const json* v = Field(b, "echo")) {
    bool echo = false;
    RETURN_IF_ERROR(AsBool(*v, "echo", &echo));
    if (echo) return Bad("echo", "echoing the prompt is not supported");
  }
  if (const json* v = Field(b, "suffix"); v != nullptr && !(v->is_string() && v->empty())) {
    return Bad("suffix", "suffix is not supported");
  }
  if (const json* v = Field(b, "best_of")) {
    int32_t best_of = 0;
    RETURN_IF_ERROR(AsInt32(*v, "best_of", &best_of));
    if (best_of != r->n) return Bad("best_of", absl::StrCat("must equal n (", r->n, ")"));
  }
  const json* p = Field(b, "prompt");
  if (p == nullptr) return Bad("prompt", "is required");
  auto with_prompt = [&](auto&& set) {
    v1::GenerateRequest one = g;
    set(one);
    r->prompts.push_back(std::move(one));
  };
  if (p->is_string()) {
    with_prompt([&](v1::GenerateRequest& x) { x.set_prompt(p->get<std::string>()); });
    return absl::OkStatus();
  }
  if (!p->is_array()) {
    return WrongType("prompt", "a string, an array of strings or token ids", *p);
  }
  if (p->empty()) return Bad("prompt", "must not be empty");
  auto token_ids = [](const json& a, const std::string& field, v1::GenerateRequest& x) {
    for (size_t i = 0; i < a.size(); ++i) {
      int32_t id = 0;
      RETURN_IF_ERROR(AsInt32(a[i], absl::StrCat(field, "[", i, "]"), &id));
      x.add_prompt_token_ids(id);
    }
    return absl::OkStatus();
  };
  if ((*p)[0].is_number()) {  // one prompt of token ids
    v1::GenerateRequest one = g;
    RETURN_IF_ERROR(token_ids(*p, "prompt", one));
    r->prompts.push_back(std::move(one));
    return absl::OkStatus();
  }
  if (p->size() > kMaxPrompts) {
    return Bad("prompt", absl::StrCat("at most ", kMaxPrompts, " prompts, got ", p->size()));
  }
  for (size_t i = 0; i < p->size(); ++i) {
    const std::string field = absl::StrCat("prompt[", i, "]");
    const json& e = (*p)[i];
    v1::GenerateRequest one = g;
    if (e.is_string()) {
      one.set_prompt(e.get<std::string>());
    } else if (e.is_array()) {
      if (e.empty()) return Bad(field, "must not be empty");
      RETURN_IF_ERROR(token_ids(e, field, one));
    } else {
      return WrongType(field, "a string or an array of token ids", e);
    }
    r->prompts.push_back(std::move(one));
  }
  return absl::OkStatus();
}

std::string LeadingField(absl::string_view message, absl::string_view* rest) {
  const size_t colon = message.find(": ");
  if (colon == absl::string_view::npos || colon == 0) return "";
  const absl::string_view head = message.substr(0, colon);
  if (head.find(' ') != absl::string_view::npos) return "";
  if (rest != nullptr) *rest = message.substr(colon + 2);
  return std::string(head);
}

}  // namespace

absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(OpenAiEndpoint endpoint, std::string_view body) {
  ASSIGN_OR_RETURN(json b, ParseBody(body));
  OpenAiRequest r;
  r.endpoint = endpoint;
  if (endpoint == OpenAiEndpoint::kChat) {
    RETURN_IF_ERROR(ParseChat(b, &r));
  } else {
    RETURN_IF_ERROR(ParseCompletions(b, &r));
  }
  return r;
}

absl::StatusOr<TokenizeHttpRequest> ParseTokenizeRequest(std::string_view body) {
  ASSIGN_OR_RETURN(json b, ParseBody(body));
  TokenizeHttpRequest t;
  v1::TokenizeRequest& r = t.request;
  if (const json* v = Field(b, "model")) RETURN_IF_ERROR(AsString(*v, "model", r.mutable_model()));
  if (const json* v = Field(b, "prompt"))
    RETURN_IF_ERROR(AsString(*v, "prompt", r.mutable_prompt()));
  if (const json* v = Field(b, "messages"))
    RETURN_IF_ERROR(ParseMessages(*v, r.mutable_messages()));
  bool flag = false;
  if (const json* v = Field(b, "add_generation_prompt")) {
    RETURN_IF_ERROR(AsBool(*v, "add_generation_prompt", &flag));
    r.set_add_generation_prompt(flag);
  }
  if (const json* v = Field(b, "return_token_strs")) {
    RETURN_IF_ERROR(AsBool(*v, "return_token_strs", &flag));
    r.set_return_tokens(flag);
  }
  if (const json* v = Field(b, "add_special_tokens")) {
    RETURN_IF_ERROR(AsBool(*v, "add_special_tokens", &t.add_special_tokens));
    if (!t.add_special_tokens) return Bad("add_special_tokens", "only true is supported");
  }
  return t;
}

absl::StatusOr<std::vector<int32_t>> ParseDetokenizeRequest(std::string_view body,
                                                            std::string* model) {
  ASSIGN_OR_RETURN(json b, ParseBody(body));
  if (const json* v = Field(b, "model")) RETURN_IF_ERROR(AsString(*v, "model", model));
  const json* t = Field(b, "tokens");
  if (t == nullptr) return Bad("tokens", "is required");
  if (!t->is_array()) return WrongType("tokens", "an array of integers", *t);
  std::vector<int32_t> ids;
  for (size_t i = 0; i < t->size(); ++i) {
    int32_t id = 0;
    RETURN_IF_ERROR(AsInt32((*t)[i], absl::StrCat("tokens[", i, "]"), &id));
    ids.push_back(id);
  }
  return ids;
}

absl::Status RenameCoreError(const absl::Status& status, const OpenAiRequest& request,
                             int prompt_index) {
  absl::string_view rest;
  const std::string field = LeadingField(status.message(), &rest);
  if (field.empty()) return status;
  const bool chat = request.endpoint == OpenAiEndpoint::kChat;
  const std::string base = field.substr(0, field.find('['));
  std::string param;
  if (absl::StartsWith(base, "sampling.")) {
    param = base.substr(9);
    if (param == "top_logprobs" && !chat) param = "logprobs";
  } else if (base == "stopping.max_tokens") {
    param = request.max_tokens_param;
  } else if (absl::StartsWith(base, "stopping.")) {
    param = base.substr(9);
  } else if (!chat && (base == "input" || base == "prompt" || base == "prompt_token_ids")) {
    if (request.prompts.size() > 1) {
      param = absl::StrCat("prompt[", prompt_index, "]");
    } else {
      param = base == "prompt_token_ids" ? "prompt" + field.substr(base.size()) : "prompt";
    }
  } else if (base == "input") {
    param = "messages";
  } else if (base == "response_format" && !request.constraint.param.empty()) {
    param = request.constraint.param;  // e.g. structured output unavailable for the model
  } else if (absl::StartsWith(base, "response_format.") && !request.constraint.field.empty()) {
    param = request.constraint.field + field.substr(base.size());
  } else {
    return status;  // messages[...], model, priority, ...: the same name in both APIs
  }
  return absl::Status(status.code(), absl::StrCat(param, ": ", rest));
}

HttpError MakeHttpError(int http_status, const std::string& message, const std::string& type,
                        const std::string& param, const std::string& code) {
  json e = {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}};
  HttpError out;
  out.status = http_status;
  out.body = json{{"error", std::move(e)}}.dump(-1, ' ', false, json::error_handler_t::replace);
  return out;
}

HttpError ToHttpError(const absl::Status& status) {
  const std::string message(status.message());
  const std::string param = LeadingField(message, nullptr);
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
      // Images over --max-image-bytes / --max-image-pixels (src/vision's limit errors).
      if (absl::StrContains(param, "image") &&
          (absl::StrContains(message, "exceeds the limit of") ||
           absl::StrContains(message, "than the limit of"))) {
        return MakeHttpError(413, message, "invalid_request_error", param, "request_too_large");
      }
      return MakeHttpError(400, message, "invalid_request_error", param);
    case absl::StatusCode::kUnimplemented:
      return MakeHttpError(400, message, "invalid_request_error", param, "unsupported_parameter");
    case absl::StatusCode::kUnauthenticated:
      return MakeHttpError(401, message, "authentication_error", "", "invalid_api_key");
    case absl::StatusCode::kPermissionDenied:
      return MakeHttpError(403, message, "permission_error", param);
    case absl::StatusCode::kNotFound:
      return MakeHttpError(404, message, "not_found_error", param,
                           param == "model" ? "model_not_found" : "");
    case absl::StatusCode::kResourceExhausted: {
      HttpError e = MakeHttpError(429, message, "rate_limit_error", "", "rate_limit_exceeded");
      e.retry_after_s = 1;                                   // engine queue full: soon
      if (auto p = status.GetPayload(kRetryAfterPayload)) {  // tenant bucket: until it refills
        int64_t s = 0;
        if (absl::SimpleAtoi(std::string(*p), &s) && s > 0) e.retry_after_s = static_cast<int>(s);
      }
      return e;
    }
    case absl::StatusCode::kUnavailable:
      return MakeHttpError(503, message, "server_error", "", "service_unavailable");
    case absl::StatusCode::kDeadlineExceeded:
      return MakeHttpError(504, message, "server_error", "", "timeout");
    default:
      return MakeHttpError(500, message, "server_error");
  }
}

}  // namespace muse::server
