#include "src/server/chat_request.h"

#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "src/server/request_builder.h"

namespace muse::server {
namespace {

absl::Status Bad(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

// req.tools -> the specs the forced-call schemas take, every field checked and named.
absl::StatusOr<std::vector<chat::ToolSpec>> CheckTools(const v1::GenerateRequest& req) {
  std::vector<chat::ToolSpec> specs;
  std::set<std::string> names;
  for (int i = 0; i < req.tools_size(); ++i) {
    const v1::Tool& t = req.tools(i);
    const std::string field = absl::StrCat("tools[", i, "]");
    if (!t.type().empty() && t.type() != "function") {
      return Bad(field + ".type", absl::StrCat("must be function, got '", t.type(), "'"));
    }
    if (t.name().empty()) return Bad(field + ".name", "is required (a function name)");
    if (!names.insert(t.name()).second) {
      return Bad(field + ".name", absl::StrCat("\"", t.name(), "\" appears twice"));
    }
    if (!t.parameters_json().empty()) {
      ASSIGN_OR_RETURN(nlohmann::ordered_json p,
                       ParseToolJson(t.parameters_json(), field + ".parameters_json"));
      if (!p.is_object()) {
        return Bad(field + ".parameters_json",
                   absl::StrCat("must be a JSON Schema object, got JSON ", p.type_name()));
      }
    }
    specs.push_back({t.name(), t.parameters_json()});
  }
  return specs;
}

}  // namespace

absl::StatusOr<ToolPlan> ApplyToolChoice(const ChatFormats& formats, v1::GenerateRequest* req) {
  ToolPlan plan;
  ASSIGN_OR_RETURN(std::vector<chat::ToolSpec> tools, CheckTools(*req));
  plan.parallel_tool_calls = !req->has_parallel_tool_calls() || req->parallel_tool_calls();
  const v1::ToolChoice& tc = req->tool_choice();
  const bool chat = !req->messages().empty();
  plan.mode = tools.empty() ? ToolMode::kNone : ToolMode::kModel;
  if (tc.choice_case() == v1::ToolChoice::kFunctionName) {
    const std::string& name = tc.function_name();
    if (name.empty()) return Bad("tool_choice.function_name", "must not be empty");
    if (tools.empty()) {
      return Bad("tool_choice.function_name",
                 absl::StrCat("names \"", name, "\" but no tools are given"));
    }
    plan.mode = ToolMode::kNamed;
    plan.function_name = name;
    for (size_t i = 0; i < tools.size(); ++i) {
      if (tools[i].name == name) plan.schema_field = absl::StrCat("tools[", i, "].parameters_json");
    }
    if (plan.schema_field.empty()) {
      return Bad("tool_choice.function_name",
                 absl::StrCat("\"", name, "\" is not one of the tools"));
    }
  } else if (tc.choice_case() == v1::ToolChoice::kMode) {
    switch (tc.mode()) {
      case v1::TOOL_CHOICE_MODE_UNSPECIFIED:
        break;
      case v1::TOOL_CHOICE_MODE_NONE:
        plan.mode = ToolMode::kNone;
        break;
      case v1::TOOL_CHOICE_MODE_AUTO:
        break;  // kModel with tools; nothing to call without
      case v1::TOOL_CHOICE_MODE_REQUIRED:
        if (tools.empty()) return Bad("tool_choice.mode", "is REQUIRED but no tools are given");
        plan.mode = ToolMode::kRequired;
        plan.schema_field = "tools";
        break;
      default:
        return Bad("tool_choice.mode", absl::StrCat("unknown mode ", static_cast<int>(tc.mode())));
    }
  }
  const bool forced = plan.mode == ToolMode::kRequired || plan.mode == ToolMode::kNamed;
  if (forced) {
    const std::string field =
        plan.mode == ToolMode::kNamed ? "tool_choice.function_name" : "tool_choice.mode";
    if (!chat) return Bad(field, "a forced tool call needs messages input (the chat template)");
    if (req->response_format().format_case() != v1::ResponseFormat::FORMAT_NOT_SET) {
      return Bad(field,
                 "a forced tool call conflicts with response_format (the call is itself a "
                 "structured-output constraint)");
    }
    auto schema =
        ForcedToolCallSchema(tools, plan.mode, plan.function_name, plan.parallel_tool_calls);
    if (!schema.ok()) return Bad(plan.schema_field, std::string(schema.status().message()));
    req->mutable_response_format()->set_json_schema(std::move(*schema));
    req->mutable_response_format()->set_strict(true);
  }
  plan.parse = chat && ParsesOutput(formats, plan.mode);
  if (plan.parse && KeepsSpecialTokens(formats, plan.mode, req->has_skip_special_tokens(),
                                       !req->stopping().stop().empty())) {
    req->set_skip_special_tokens(false);
    plan.keep_special = true;
  }
  return plan;
}

absl::Status RenameToolChoiceError(const absl::Status& status, const ToolPlan& plan) {
  constexpr absl::string_view kPrefix = "response_format.json_schema";
  absl::string_view message = status.message();
  if (plan.schema_field.empty() || !absl::ConsumePrefix(&message, kPrefix)) return status;
  return absl::Status(status.code(), absl::StrCat(plan.schema_field, message));
}

SampleChatParsers::SampleChatParsers(const ChatFormats& formats, ToolPlan plan, uint64_t seed)
    : formats_(formats), plan_(std::move(plan)), seed_(seed) {}

std::unique_ptr<chat::ChatOutputParser> SampleChatParsers::Make(int sample) const {
  // The HTTP face's choice seeding: one id stream per sample.
  auto p = MakeChatParser(formats_, plan_.mode, plan_.function_name,
                          seed_ ^ (0x9e3779b97f4a7c15ull * static_cast<uint64_t>(sample + 1)));
  // parallel_tool_calls false: one call (auto keeps the model's first; REQUIRED's schema allows
  // one).
  if (!plan_.parallel_tool_calls) p->set_max_tool_calls(1);
  return p;
}

namespace {

// Parser deltas -> the v1 delta's channels. Consecutive argument fragments of one call merge; a
// call's first fragment stays alone (index, id, name, "").
void Fill(const chat::ChatOutputDelta& d, v1::SampleDelta* s) {
  s->set_reasoning(d.reasoning);
  std::string content;
  for (const chat::ChatDelta& x : d.deltas) {
    if (!x.tool_call) {
      content += x.content;
      continue;
    }
    const chat::ToolCallDelta& t = *x.tool_call;
    const bool first = !t.id.empty() || !t.name.empty();
    const int n = s->tool_calls_size();
    if (!first && n > 0 && s->tool_calls(n - 1).index() == t.index &&
        s->tool_calls(n - 1).id().empty()) {
      s->mutable_tool_calls(n - 1)->mutable_arguments()->append(t.arguments);
      continue;
    }
    v1::ToolCall* c = s->add_tool_calls();
    c->set_index(t.index);
    c->set_id(t.id);
    c->set_name(t.name);
    if (first && !t.arguments.empty()) {  // keep the first fragment's arguments empty
      v1::ToolCall* rest = s->add_tool_calls();
      rest->set_index(t.index);
      rest->set_arguments(t.arguments);
    } else {
      c->set_arguments(t.arguments);
    }
  }
  s->set_text(std::move(content));
}

}  // namespace

void SampleChatParsers::Apply(std::map<int, v1::SampleDelta>* deltas) {
  for (auto& [index, s] : *deltas) {
    std::unique_ptr<chat::ChatOutputParser>& p = parsers_[index];
    if (!p) p = Make(index);
    chat::ChatOutputDelta d = p->Feed(s.text());
    const bool finished = s.finish_reason() != v1::FINISH_REASON_UNSPECIFIED;
    if (finished) {
      chat::ChatOutputDelta f = p->Finish();
      d.reasoning += f.reasoning;  // reasoning always precedes content: no order is lost
      for (chat::ChatDelta& x : f.deltas) d.deltas.push_back(std::move(x));
    }
    Fill(d, &s);
    if (finished && s.finish_reason() == v1::FINISH_REASON_STOP && p->saw_tool_call()) {
      s.set_finish_reason(v1::FINISH_REASON_TOOL_CALLS);
    }
  }
}

void SampleChatParsers::ApplyWhole(v1::Completion* c) const {
  const chat::ChatOutput out = Make(c->index())->Parse(c->text());
  c->set_reasoning(out.reasoning);
  c->set_text(out.parsed.content);
  for (size_t k = 0; k < out.parsed.calls.size(); ++k) {
    v1::ToolCall* t = c->add_tool_calls();
    t->set_index(static_cast<int>(k));
    t->set_id(out.parsed.calls[k].id);
    t->set_name(out.parsed.calls[k].name);
    t->set_arguments(out.parsed.calls[k].arguments);
  }
  if (c->finish_reason() == v1::FINISH_REASON_STOP && !out.parsed.calls.empty()) {
    c->set_finish_reason(v1::FINISH_REASON_TOOL_CALLS);
  }
}

}  // namespace muse::server
