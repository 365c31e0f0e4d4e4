// Tool calls the request forces (`tool_choice: "required"` or a named function). The output is
// then constrained by a JSON Schema through the structured-output grammar, so even a weak model
// writes a valid call; as in vLLM, the forced output is plain JSON rather than the model's own
// call format, so one schema and one parser serve every model:
//   required: [{"name": "<a tool>", "parameters": {...}}, ...]   (one item or more)
//   named:    the arguments object itself
// The parsers follow the streaming contract of tool_call_parser.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "src/chat/tool_call_parser.h"

namespace muse::chat {

struct ToolSpec {
  std::string name;
  std::string parameters;  // the function's JSON Schema as text; empty: it takes no parameters
};

// The schema of a "required" output. Each tool's parameters are embedded under
// /items/anyOf/<i>/properties/parameters, with its local `$ref`s rewritten to match.
// InvalidArgument naming the field: no tools, an empty or repeated name, parameters that are not
// a JSON object. `parallel_tool_calls` false: exactly one call (maxItems 1).
absl::StatusOr<std::string> RequiredToolCallSchema(const std::vector<ToolSpec>& tools,
                                                   bool parallel_tool_calls = true);

// The schema of a named output: that tool's parameters (an empty object when it has none).
// InvalidArgument "tool_choice.function.name: ..." when no tool has that name.
absl::StatusOr<std::string> NamedToolCallSchema(const std::vector<ToolSpec>& tools,
                                                std::string_view name);

// Parses a "required" output: each array item is a call; text that is not (a malformed item, or
// anything after the array) is content.
std::unique_ptr<ToolCallParser> MakeRequiredToolCallParser(uint64_t id_seed, CallIdStyle style);

// Parses a named output: one call to `name` whose arguments are the whole output, raw. The call
// opens with the first byte (or at Finish for an empty output, with empty arguments).
std::unique_ptr<ToolCallParser> MakeNamedToolCallParser(std::string name, uint64_t id_seed,
                                                        CallIdStyle style);

}  // namespace muse::chat
