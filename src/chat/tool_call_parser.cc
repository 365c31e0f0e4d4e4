#include "src/chat/tool_call_parser.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "src/chat/streaming_tool_parser.h"

namespace muse::chat {

void Accumulate(const std::vector<ChatDelta>& deltas, ParsedOutput* out) {
  for (const ChatDelta& d : deltas) {
    if (!d.tool_call.has_value()) {
      out->content += d.content;
      continue;
    }
    const ToolCallDelta& t = *d.tool_call;
    if (t.index >= static_cast<int>(out->calls.size())) out->calls.resize(t.index + 1);
    ToolCall& call = out->calls[t.index];
    call.id += t.id;
    call.name += t.name;
    call.arguments += t.arguments;
  }
}

bool ArgumentsAreValidJson(const ToolCall& call) { return nlohmann::json::accept(call.arguments); }

std::string CallIdGenerator::Next(CallIdStyle style) {
  const bool mistral = style == CallIdStyle::kMistral;
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::uniform_int_distribution<int> pick(0, sizeof(kAlphabet) - 2);
  std::string id = mistral ? "" : "call_";
  const int length = mistral ? 9 : 24;
  for (int i = 0; i < length; ++i) id += kAlphabet[pick(rng_)];
  return id;
}

ParsedOutput ToolCallParser::Parse(std::string_view output) {
  ParsedOutput parsed;
  Accumulate(Feed(output), &parsed);
  Accumulate(Finish(), &parsed);
  return parsed;
}

CallIdStyle CallIdStyleOf(std::string_view parser_name) {
  return parser_name == "mistral" ? CallIdStyle::kMistral : CallIdStyle::kOpenAi;
}

std::vector<std::string> ToolCallParserNames() { return {"hermes", "llama3_json", "mistral"}; }

absl::StatusOr<std::unique_ptr<ToolCallParser>> MakeToolCallParser(std::string_view name,
                                                                   uint64_t id_seed) {
  if (name == "hermes") return internal::MakeHermesParser(id_seed);
  if (name == "llama3_json") return internal::MakeLlama3JsonParser(id_seed);
  if (name == "mistral") return internal::MakeMistralParser(id_seed);
  return absl::InvalidArgumentError(
      absl::StrCat("tool_call_parser: unknown parser \"", std::string(name),
                   "\" (known: ", absl::StrJoin(ToolCallParserNames(), ", "), ")"));
}

}  // namespace muse::chat
