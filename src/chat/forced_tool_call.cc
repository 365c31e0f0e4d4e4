#include "src/chat/forced_tool_call.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "src/chat/streaming_tool_parser.h"

namespace muse::chat {
namespace {

// ordered_json: a schema's property order is the order the grammar writes them in.
using json = nlohmann::ordered_json;

absl::StatusOr<json> ParametersOf(const ToolSpec& tool, size_t index) {
  if (tool.parameters.empty()) return json{{"type", "object"}, {"properties", json::object()}};
  json schema = json::parse(tool.parameters, nullptr, /*allow_exceptions=*/false);
  if (schema.is_discarded() || !schema.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tools[", index, "].function.parameters: not a JSON object (a JSON Schema)"));
  }
  return schema;
}

absl::Status CheckNames(const std::vector<ToolSpec>& tools) {
  std::set<std::string> seen;
  for (size_t i = 0; i < tools.size(); ++i) {
    if (tools[i].name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("tools[", i, "].function.name: empty"));
    }
    if (!seen.insert(tools[i].name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("tools[", i, "].function.name: \"", tools[i].name, "\" appears twice"));
    }
  }
  return absl::OkStatus();
}

// Local references (`#/...`) of a schema moved under `pointer` must point under it too. Values of
// keywords that hold data rather than schemas are left alone.
void RebaseRefs(json& schema, const std::string& pointer) {
  if (schema.is_array()) {
    for (json& item : schema) RebaseRefs(item, pointer);
    return;
  }
  if (!schema.is_object()) return;
  for (auto it = schema.begin(); it != schema.end(); ++it) {
    const std::string& key = it.key();
    if (key == "enum" || key == "const" || key == "default" || key == "examples") continue;
    if (key == "$ref" && it->is_string()) {
      const std::string ref = it->get<std::string>();
      if (!ref.empty() && ref[0] == '#') *it = "#" + pointer + ref.substr(1);
      continue;
    }
    RebaseRefs(*it, pointer);
  }
}

class RequiredParser final : public internal::StreamingToolParser {
 public:
  RequiredParser(uint64_t id_seed, CallIdStyle style) : StreamingToolParser(id_seed, style) {}

 private:
  enum class State { kOpen, kHeader, kArguments, kTail, kNext, kAfter, kText };

  bool Step() override {
    using internal::Scan;
    switch (state_) {
      case State::kOpen: {
        size_t i = 0;
        Skip(&i);
        if (i == buf_.size()) {
          if (!eof_) return false;
          state_ = State::kText;
        } else if (buf_[i] == '[') {
          header_pos_ = i + 1;
          state_ = State::kHeader;
        } else {
          state_ = State::kText;
        }
        return true;
      }
      case State::kHeader: {
        const Scan scan = CommitCallObject(header_pos_);
        if (scan == Scan::kDone) {
          state_ = arguments_open() ? State::kArguments : State::kNext;
        } else if (scan == Scan::kMalformed || eof_) {
          state_ = State::kText;  // held from the `[` or `,`: all text
        } else {
          return false;
        }
        return true;
      }
      case State::kArguments:
        if (!arguments_open()) {
          state_ = State::kTail;
          return true;
        }
        return StepArguments();
      case State::kTail:  // a call object that ends badly leaves the rest as text
        if (const std::optional<bool> ok = StepCallTail()) {
          state_ = *ok ? State::kNext : State::kText;
          return true;
        }
        return false;
      case State::kNext: {
        size_t i = 0;
        Skip(&i);
        if (i == buf_.size()) {
          if (eof_) Drop(i);
          return false;
        }
        if (buf_[i] == ',') {
          header_pos_ = i + 1;
          state_ = State::kHeader;
        } else if (buf_[i] == ']') {
          Drop(i + 1);
          state_ = State::kAfter;
        } else {
          state_ = State::kText;
        }
        return true;
      }
      case State::kAfter: {  // whitespace after the array is syntax; text is content
        size_t i = 0;
        Skip(&i);
        if (i < buf_.size()) {
          state_ = State::kText;
          return true;
        }
        if (eof_) Drop(i);
        return false;
      }
      case State::kText:
        EmitContent(buf_.size());
        return false;
    }
    return false;
  }

  State state_ = State::kOpen;
  size_t header_pos_ = 0;
};

class NamedParser final : public ToolCallParser {
 public:
  NamedParser(std::string name, uint64_t id_seed, CallIdStyle style)
      : name_(std::move(name)), ids_(id_seed), style_(style) {}

  std::vector<ChatDelta> Feed(std::string_view delta) override {
    std::vector<ChatDelta> out;
    if (delta.empty()) return out;
    Open(&out);
    out.emplace_back().tool_call = ToolCallDelta{0, "", "", std::string(delta)};
    return out;
  }

  std::vector<ChatDelta> Finish() override {
    std::vector<ChatDelta> out;
    Open(&out);
    return out;
  }

 private:
  void Open(std::vector<ChatDelta>* out) {
    if (opened_) return;
    opened_ = true;
    out->emplace_back().tool_call = ToolCallDelta{0, ids_.Next(style_), name_, ""};
  }

  std::string name_;
  CallIdGenerator ids_;
  CallIdStyle style_;
  bool opened_ = false;
};

}  // namespace

absl::StatusOr<std::string> RequiredToolCallSchema(const std::vector<ToolSpec>& tools,
                                                   bool parallel_tool_calls) {
  if (tools.empty()) {
    return absl::InvalidArgumentError("tools: tool_choice \"required\" needs at least one tool");
  }
  if (absl::Status s = CheckNames(tools); !s.ok()) return s;
  json any_of = json::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    absl::StatusOr<json> parameters = ParametersOf(tools[i], i);
    if (!parameters.ok()) return parameters.status();
    RebaseRefs(*parameters, absl::StrCat("/items/anyOf/", i, "/properties/parameters"));
    // Properties in this order: the compiled grammar writes "name" first, which lets the
    // streaming parser open the call before the arguments arrive.
    json item = json::object();
    item["type"] = "object";
    item["properties"] = json::object();
    item["properties"]["name"] = json{{"const", tools[i].name}};
    item["properties"]["parameters"] = std::move(*parameters);
    item["required"] = json::array({"name", "parameters"});
    item["additionalProperties"] = false;
    any_of.push_back(std::move(item));
  }
  json schema = json::object();
  schema["type"] = "array";
  schema["minItems"] = 1;
  if (!parallel_tool_calls) schema["maxItems"] = 1;
  schema["items"] = json{{"anyOf", std::move(any_of)}};
  return schema.dump();
}

absl::StatusOr<std::string> NamedToolCallSchema(const std::vector<ToolSpec>& tools,
                                                std::string_view name) {
  if (absl::Status s = CheckNames(tools); !s.ok()) return s;
  for (size_t i = 0; i < tools.size(); ++i) {
    if (tools[i].name != name) continue;
    absl::StatusOr<json> parameters = ParametersOf(tools[i], i);
    if (!parameters.ok()) return parameters.status();
    return tools[i].parameters.empty() ? parameters->dump() : tools[i].parameters;
  }
  return absl::InvalidArgumentError(absl::StrCat("tool_choice.function.name: \"", std::string(name),
                                                 "\" is not one of the tools"));
}

std::unique_ptr<ToolCallParser> MakeRequiredToolCallParser(uint64_t id_seed, CallIdStyle style) {
  return std::make_unique<RequiredParser>(id_seed, style);
}

std::unique_ptr<ToolCallParser> MakeNamedToolCallParser(std::string name, uint64_t id_seed,
                                                        CallIdStyle style) {
  return std::make_unique<NamedParser>(std::move(name), id_seed, style);
}

}  // namespace muse::chat
