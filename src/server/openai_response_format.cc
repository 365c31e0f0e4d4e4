#include "src/server/openai_response_format.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "src/server/openai_json.h"

namespace muse::server {
namespace {

using json = nlohmann::ordered_json;
using openai_json::AsBool;
using openai_json::AsString;
using openai_json::Bad;
using openai_json::Field;
using openai_json::WrongType;

// Schemas nest far less; serialising a deeper value would recurse once per level.
constexpr int kMaxSchemaDepth = 64;

// Nesting depth of `j` (a scalar is 0), counted without recursion.
int Depth(const json& j) {
  int max_depth = 0;
  std::vector<std::pair<const json*, int>> stack = {{&j, 0}};
  while (!stack.empty()) {
    auto [v, d] = stack.back();
    stack.pop_back();
    if (!v->is_structured()) continue;
    max_depth = std::max(max_depth, d + 1);
    if (max_depth > kMaxSchemaDepth) return max_depth;
    for (const json& e : *v) stack.push_back({&e, d + 1});
  }
  return max_depth;
}

// A schema given as a JSON value (object or boolean) or as its JSON text.
absl::Status SchemaText(const json& j, const std::string& param, bool allow_string,
                        std::string* out) {
  if (allow_string && j.is_string()) {
    *out = j.get<std::string>();
    return absl::OkStatus();
  }
  if (!j.is_object() && !j.is_boolean()) {
    return WrongType(param, allow_string ? "a JSON schema (object) or its JSON text" : "an object",
                     j);
  }
  if (Depth(j) > kMaxSchemaDepth) {
    return Bad(param, absl::StrCat("nests deeper than ", kMaxSchemaDepth, " levels"));
  }
  *out = j.dump(-1, ' ', false, json::error_handler_t::replace);
  return absl::OkStatus();
}

absl::Status Choices(const json& j, const std::string& param, v1::Choice* out) {
  if (!j.is_array()) return WrongType(param, "an array of strings", j);
  if (j.empty()) return Bad(param, "must not be empty");
  for (size_t i = 0; i < j.size(); ++i) {
    RETURN_IF_ERROR(AsString(j[i], absl::StrCat(param, "[", i, "]"), out->add_choices()));
  }
  return absl::OkStatus();
}

absl::Status OpenAiResponseFormat(const json& v, v1::ResponseFormat* out, ConstraintParam* where) {
  if (!v.is_object()) return WrongType("response_format", "an object", v);
  const json* t = Field(v, "type");
  if (t == nullptr) return Bad("response_format.type", "is required");
  std::string type;
  RETURN_IF_ERROR(AsString(*t, "response_format.type", &type));
  if (type == "text") return absl::OkStatus();
  where->param = "response_format";
  if (type == "json_object") {
    out->set_json_object(true);
    where->field = "response_format";
    return absl::OkStatus();
  }
  if (type != "json_schema") {
    return Bad("response_format.type",
               absl::StrCat("must be text, json_object or json_schema, got '", type, "'"));
  }
  const json* js = Field(v, "json_schema");
  if (js == nullptr) return Bad("response_format.json_schema", "is required");
  if (!js->is_object()) return WrongType("response_format.json_schema", "an object", *js);
  std::string ignored;
  for (const char* name : {"name", "description"}) {
    if (const json* s = Field(*js, name)) {
      RETURN_IF_ERROR(AsString(*s, absl::StrCat("response_format.json_schema.", name), &ignored));
    }
  }
  if (const json* s = Field(*js, "strict")) {
    bool strict = true;
    RETURN_IF_ERROR(AsBool(*s, "response_format.json_schema.strict", &strict));
    out->set_strict(strict);
  }
  const json* schema = Field(*js, "schema");
  where->field = "response_format.json_schema.schema";
  if (schema == nullptr) return Bad(where->field, "is required");
  return SchemaText(*schema, where->field, /*allow_string=*/false, out->mutable_json_schema());
}

// vLLM's structured_outputs object.
absl::Status StructuredOutputs(const json& v, v1::ResponseFormat* out, ConstraintParam* where) {
  if (!v.is_object()) return WrongType("structured_outputs", "an object", v);
  where->param = "structured_outputs";
  for (const char* unsupported : {"structural_tag", "whitespace_pattern"}) {
    if (Field(v, unsupported) != nullptr) {
      return Bad(absl::StrCat("structured_outputs.", unsupported), "is not supported");
    }
  }
  std::string first;
  for (const char* name : {"json", "regex", "choice", "grammar", "json_object"}) {
    const json* c = Field(v, name);
    if (c == nullptr) continue;
    const std::string field = absl::StrCat("structured_outputs.", name);
    if (std::string(name) == "json_object") {
      bool on = false;
      RETURN_IF_ERROR(AsBool(*c, field, &on));
      if (!on) continue;
    }
    if (!first.empty()) {
      return Bad(field, absl::StrCat("conflicts with ", first, " (set one constraint)"));
    }
    first = field;
    where->field = field;
    if (field == "structured_outputs.json") {
      RETURN_IF_ERROR(SchemaText(*c, field, /*allow_string=*/true, out->mutable_json_schema()));
    } else if (field == "structured_outputs.regex") {
      RETURN_IF_ERROR(AsString(*c, field, out->mutable_regex()));
    } else if (field == "structured_outputs.grammar") {
      RETURN_IF_ERROR(AsString(*c, field, out->mutable_grammar()));
    } else if (field == "structured_outputs.choice") {
      RETURN_IF_ERROR(Choices(*c, field, out->mutable_choice()));
    } else {
      out->set_json_object(true);
    }
  }
  if (first.empty()) {
    return Bad("structured_outputs",
               "names no constraint (json, regex, choice, grammar or "
               "json_object)");
  }
  const bool json_kind = out->format_case() == v1::ResponseFormat::kJsonSchema ||
                         out->format_case() == v1::ResponseFormat::kJsonObject;
  if (const json* w = Field(v, "disable_any_whitespace")) {
    bool disable = true;
    RETURN_IF_ERROR(AsBool(*w, "structured_outputs.disable_any_whitespace", &disable));
    if (json_kind) {
      out->set_whitespace(disable ? v1::JSON_WHITESPACE_COMPACT : v1::JSON_WHITESPACE_FLEXIBLE);
    }
  }
  if (const json* a = Field(v, "disable_additional_properties")) {
    bool disable = true;
    RETURN_IF_ERROR(AsBool(*a, "structured_outputs.disable_additional_properties", &disable));
    if (out->format_case() == v1::ResponseFormat::kJsonSchema) out->set_strict(disable);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseResponseFormat(const json& b, v1::ResponseFormat* out, ConstraintParam* where) {
  // Which parameters carry a constraint (response_format {type: text} does not).
  std::vector<std::string> set;
  if (const json* v = Field(b, "response_format")) {
    const json* t = v->is_object() ? Field(*v, "type") : nullptr;
    if (!(t != nullptr && t->is_string() && t->get<std::string>() == "text")) {
      set.push_back("response_format");
    }
  }
  for (const char* name :
       {"guided_json", "guided_regex", "guided_grammar", "guided_choice", "structured_outputs"}) {
    if (Field(b, name) != nullptr) set.push_back(name);
  }
  if (set.size() > 1) {
    return Bad(set[1], absl::StrCat("conflicts with ", set[0],
                                    " (set at most one structured output constraint)"));
  }
  if (Field(b, "guided_whitespace_pattern") != nullptr) {
    return Bad("guided_whitespace_pattern",
               "is not supported (JSON is compact; structured_outputs.disable_any_whitespace: "
               "false allows a little whitespace)");
  }
  if (const json* v = Field(b, "guided_decoding_backend")) {
    std::string backend;  // one built-in backend: any name is accepted
    RETURN_IF_ERROR(AsString(*v, "guided_decoding_backend", &backend));
  }
  // At most one of the following sets a constraint ({type: text} sets none).
  if (const json* v = Field(b, "response_format")) {
    RETURN_IF_ERROR(OpenAiResponseFormat(*v, out, where));
  }
  if (const json* v = Field(b, "structured_outputs")) return StructuredOutputs(*v, out, where);
  if (const json* v = Field(b, "guided_json")) {
    *where = {"guided_json", "guided_json"};
    return SchemaText(*v, "guided_json", /*allow_string=*/true, out->mutable_json_schema());
  }
  if (const json* v = Field(b, "guided_regex")) {
    *where = {"guided_regex", "guided_regex"};
    return AsString(*v, "guided_regex", out->mutable_regex());
  }
  if (const json* v = Field(b, "guided_grammar")) {
    *where = {"guided_grammar", "guided_grammar"};
    return AsString(*v, "guided_grammar", out->mutable_grammar());
  }
  if (const json* v = Field(b, "guided_choice")) {
    *where = {"guided_choice", "guided_choice"};
    return Choices(*v, "guided_choice", out->mutable_choice());
  }
  return absl::OkStatus();
}

}  // namespace muse::server
