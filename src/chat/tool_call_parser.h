// Tool calls parsed from a model's own output format, streamed the way OpenAI's
// `chat.completion.chunk` carries them. Protocol-neutral: the gRPC and HTTP faces translate.
//
// Streaming contract (every format):
//  - Feed() returns the deltas a piece of output decides, in order; Finish() flushes the rest.
//  - A delta is either content text or one tool-call fragment. The first fragment of a call
//    carries its index (0, 1, ... in order), a fresh id and the function name with empty
//    arguments; later fragments of that index carry raw argument text exactly as the model wrote
//    it (never re-serialised; a tool without parameters keeps `{}`).
//  - A call is committed once its header is complete (the name and the opening `{` of its
//    arguments); text that cannot become a call header is content, byte for byte, so malformed
//    calls become content and nothing is lost. After the commit, the arguments run to the
//    matching `}` (found by scanning strings, escapes and depth); an output cut off inside them
//    leaves a call with truncated arguments (ToolCall::arguments is then not valid JSON).
//  - Deltas split UTF-8 only where the input deltas did.
//  - For every split of an output, accumulating the streamed deltas gives Parse() of the whole
//    output (tests/chat checks one byte at a time and random chunkings).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace muse::chat {

struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;  // raw JSON text as the model wrote it
};

struct ToolCallDelta {
  int index = 0;
  std::string id;         // first fragment of a call only
  std::string name;       // first fragment of a call only
  std::string arguments;  // later fragments: raw argument text
};

// One streamed delta: content text, or (when tool_call is set) one tool-call fragment.
struct ChatDelta {
  std::string content;
  std::optional<ToolCallDelta> tool_call;
};

struct ParsedOutput {
  std::string content;
  std::vector<ToolCall> calls;
};

// Appends streamed deltas to `out` the way a client accumulates them (content concatenated; per
// index: id and name set by the first fragment, arguments concatenated).
void Accumulate(const std::vector<ChatDelta>& deltas, ParsedOutput* out);

// Whether a finished call's arguments are one complete JSON value (false when cut off).
bool ArgumentsAreValidJson(const ToolCall& call);

// Call ids: `call_` + 24 alphanumerics (OpenAI style), or exactly 9 alphanumerics (Mistral's
// chat templates refuse other ids when the calls come back in the next turn).
enum class CallIdStyle { kOpenAi, kMistral };

// Seeded, so tests (and replays) are deterministic.
class CallIdGenerator {
 public:
  explicit CallIdGenerator(uint64_t seed) : rng_(seed) {}
  std::string Next(CallIdStyle style);

 private:
  std::mt19937_64 rng_;
};

class ToolCallParser {
 public:
  virtual ~ToolCallParser() = default;
  virtual std::vector<ChatDelta> Feed(std::string_view delta) = 0;
  virtual std::vector<ChatDelta> Finish() = 0;

  // The whole output at once. Call on a fresh parser (it feeds and finishes this one).
  ParsedOutput Parse(std::string_view output);
};

// The parser names, as a future --tool-call-parser flag takes them.
std::vector<std::string> ToolCallParserNames();

// The id style a named parser uses (kOpenAi for unknown names).
CallIdStyle CallIdStyleOf(std::string_view parser_name);

// `llama3_json`, `hermes` (also Qwen2.5 / Qwen3) or `mistral` (tokenizer v3 and v11+ formats).
// InvalidArgument naming the field and the known names for anything else.
absl::StatusOr<std::unique_ptr<ToolCallParser>> MakeToolCallParser(std::string_view name,
                                                                   uint64_t id_seed);

}  // namespace muse::chat
