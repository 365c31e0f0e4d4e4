// The model's chat output formats as the server applies them (#18): which tool-call parser and
// whether a `<think>` reasoning channel, chosen once at load from --tool-call-parser /
// --reasoning-parser or, for "auto", from the chat template; and, per request and choice, the
// src/chat pipeline that splits generated text into reasoning, content and tool calls.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "src/chat/chat_output_parser.h"
#include "src/chat/forced_tool_call.h"
#include "src/chat/reasoning_parser.h"
#include "src/tokenizer/jinja/chat_template.h"

namespace muse::server {

struct ChatFormats {
  std::string tool_call_parser;              // "hermes", "llama3_json", "mistral"; "" = none
  bool reasoning = false;                    // a <think> ... </think> channel
  chat::ReasoningOptions reasoning_options;  // .start: kInsideBlock when the prompt opens it
  // Whether the model's own tool-call format may use special tokens (Llama 3's <|python_tag|>,
  // Mistral's [TOOL_CALLS]): tool_choice auto then decodes text with them kept, the stop token's
  // text left out. (`<think>` and Qwen's `<tool_call>` are not special in their tokenizers.)
  bool keep_special_tokens = false;
};

// The flag values (`auto`, `none` or a parser name) -> the formats. "auto" looks at the chat
// template's text: `<tool_call>` -> hermes, `[TOOL_CALLS]` -> mistral, `<|python_tag|>` or the
// `ipython` role -> llama3_json; `<think>` -> reasoning. With reasoning, `chat_template` (may be
// null; `source` is its text) is rendered once with a user message and the generation prompt: a
// prompt that ends inside an open think block makes the output start as reasoning. InvalidArgument
// naming the flag for unknown names.
absl::StatusOr<ChatFormats> ResolveChatFormats(const std::string& tool_flag,
                                               const std::string& reasoning_flag,
                                               const std::string& source,
                                               const jinja::ChatTemplate* chat_template,
                                               const std::string& bos_token,
                                               const std::string& eos_token);

// The values --tool-call-parser and --reasoning-parser take.
std::vector<std::string> ToolCallParserFlagValues();
std::vector<std::string> ReasoningParserFlagValues();

// How a request wants tool calls handled.
enum class ToolMode {
  kNone,      // tool_choice "none", or no tools: no tool parser
  kModel,     // "auto": the model's own format (the served model's tool_call_parser)
  kRequired,  // "required": constrained to [{"name", "parameters"}, ...]
  kNamed,     // a named function: constrained to its arguments
};

// One choice's pipeline. Forced calls (kRequired, kNamed) have no reasoning stage: the grammar
// makes the whole output the call. `seed` makes the call ids deterministic (e.g. request id +
// choice).
std::unique_ptr<chat::ChatOutputParser> MakeChatParser(const ChatFormats& formats, ToolMode mode,
                                                       const std::string& function_name,
                                                       uint64_t seed);

// Whether a request in `mode` on `formats` parses its output at all (else text goes out as is).
bool ParsesOutput(const ChatFormats& formats, ToolMode mode);

// The structured-output schema that enforces a forced call (both faces): kRequired -> the array
// of {"name", "parameters"} items (at most one item when !parallel_tool_calls), kNamed -> the
// arguments of `function_name`. Errors are src/chat's (forced_tool_call.h), named the OpenAI way
// ("tool_choice.function.name: ..."); callers validate the tools first to name their own fields.
absl::StatusOr<std::string> ForcedToolCallSchema(const std::vector<chat::ToolSpec>& tools,
                                                 ToolMode mode, std::string_view function_name,
                                                 bool parallel_tool_calls);

// Whether the text the parser sees must keep special tokens (the model's own markers may be
// special: Llama 3's <|python_tag|>, Mistral's [TOOL_CALLS]) -- only for tool_choice auto, and not
// when the client chose skip_special_tokens itself or sent stop strings (the core refuses stop
// strings without skipping). The stop token's text is then left out (OutputAccumulator).
bool KeepsSpecialTokens(const ChatFormats& formats, ToolMode mode, bool client_set_skip,
                        bool has_stop_strings);

}  // namespace muse::server
