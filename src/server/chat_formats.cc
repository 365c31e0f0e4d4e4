#include "src/server/chat_formats.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "src/chat/tool_call_parser.h"
#include "src/common/status.h"

namespace muse::server {

std::vector<std::string> ToolCallParserFlagValues() {
  std::vector<std::string> v = {"auto", "none"};
  for (std::string& n : chat::ToolCallParserNames()) v.push_back(std::move(n));
  return v;
}

std::vector<std::string> ReasoningParserFlagValues() { return {"auto", "none", "think"}; }

absl::StatusOr<ChatFormats> ResolveChatFormats(const std::string& tool_flag,
                                               const std::string& reasoning_flag,
                                               const std::string& source,
                                               const jinja::ChatTemplate* chat_template,
                                               const std::string& bos_token,
                                               const std::string& eos_token) {
  ChatFormats f;
  if (tool_flag == "auto") {
    if (absl::StrContains(source, "<tool_call>")) {
      f.tool_call_parser = "hermes";
    } else if (absl::StrContains(source, "[TOOL_CALLS]")) {
      f.tool_call_parser = "mistral";
    } else if (absl::StrContains(source, "<|python_tag|>") ||
               absl::StrContains(source, "ipython")) {
      f.tool_call_parser = "llama3_json";
    }
  } else if (tool_flag != "none") {
    const std::vector<std::string> names = chat::ToolCallParserNames();
    if (std::find(names.begin(), names.end(), tool_flag) == names.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tool-call-parser: unknown parser \"", tool_flag,
                       "\" (known: ", absl::StrJoin(ToolCallParserFlagValues(), ", "), ")"));
    }
    f.tool_call_parser = std::string(tool_flag);
  }
  if (reasoning_flag == "auto") {
    f.reasoning = absl::StrContains(source, "<think>");
  } else if (reasoning_flag == "think") {
    f.reasoning = true;
  } else if (reasoning_flag != "none") {
    return absl::InvalidArgumentError(
        absl::StrCat("--reasoning-parser: unknown parser \"", reasoning_flag,
                     "\" (known: ", absl::StrJoin(ReasoningParserFlagValues(), ", "), ")"));
  }
  if (f.reasoning && chat_template != nullptr) {
    const nlohmann::json ctx = {
        {"messages", nlohmann::json::array({{{"role", "user"}, {"content", "x"}}})},
        {"add_generation_prompt", true},
        {"bos_token", bos_token},
        {"eos_token", eos_token}};
    if (auto rendered = chat_template->Render(ctx); rendered.ok()) {
      const absl::string_view prompt = absl::StripTrailingAsciiWhitespace(*rendered);
      if (absl::EndsWith(prompt, f.reasoning_options.start_tag)) {
        f.reasoning_options.start = chat::ReasoningStart::kInsideBlock;
      }
    }
  }
  f.keep_special_tokens = !f.tool_call_parser.empty();
  return f;
}

bool ParsesOutput(const ChatFormats& formats, ToolMode mode) {
  return formats.reasoning || mode == ToolMode::kRequired || mode == ToolMode::kNamed ||
         (mode == ToolMode::kModel && !formats.tool_call_parser.empty());
}

absl::StatusOr<std::string> ForcedToolCallSchema(const std::vector<chat::ToolSpec>& tools,
                                                 ToolMode mode, std::string_view function_name,
                                                 bool parallel_tool_calls) {
  if (mode == ToolMode::kNamed) return chat::NamedToolCallSchema(tools, function_name);
  if (mode != ToolMode::kRequired) {
    return absl::InternalError("ForcedToolCallSchema: tool_choice is not a forced call");
  }
  return chat::RequiredToolCallSchema(tools, parallel_tool_calls);
}

bool KeepsSpecialTokens(const ChatFormats& formats, ToolMode mode, bool client_set_skip,
                        bool has_stop_strings) {
  // Forced calls are plain JSON and `<think>` is plain text: only the model's own format needs
  // them.
  return mode == ToolMode::kModel && formats.keep_special_tokens &&
         !formats.tool_call_parser.empty() && !client_set_skip && !has_stop_strings;
}

std::unique_ptr<chat::ChatOutputParser> MakeChatParser(const ChatFormats& formats, ToolMode mode,
                                                       const std::string& function_name,
                                                       uint64_t seed) {
  // A forced call is constrained to JSON from the first byte: no reasoning block to split off.
  const bool forced = mode == ToolMode::kRequired || mode == ToolMode::kNamed;
  std::optional<chat::ReasoningParser> reasoning;
  if (formats.reasoning && !forced) {
    auto r = chat::ReasoningParser::Create(formats.reasoning_options);
    if (r.ok()) reasoning.emplace(std::move(*r));  // the default tags: always valid
  }
  const chat::CallIdStyle style = chat::CallIdStyleOf(formats.tool_call_parser);
  std::unique_ptr<chat::ToolCallParser> tools;
  switch (mode) {
    case ToolMode::kNone:
      break;
    case ToolMode::kModel:
      if (!formats.tool_call_parser.empty()) {
        auto p = chat::MakeToolCallParser(formats.tool_call_parser, seed);
        if (p.ok()) tools = std::move(*p);  // resolved at load: a known name
      }
      break;
    case ToolMode::kRequired:
      tools = chat::MakeRequiredToolCallParser(seed, style);
      break;
    case ToolMode::kNamed:
      tools = chat::MakeNamedToolCallParser(function_name, seed, style);
      break;
  }
  return std::make_unique<chat::ChatOutputParser>(std::move(reasoning), std::move(tools));
}

}  // namespace muse::server
