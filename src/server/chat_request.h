// Tool calls and the reasoning channel on the core's v1 messages (#18): a GenerateRequest's tools
// and tool_choice checked and turned into the forced call's structured-output constraint, and
// each sample's text split into reasoning, content and tool calls on the v1 deltas. The gRPC face
// uses both; the src/chat parsers and ForcedToolCallSchema (chat_formats.h) are what the HTTP
// face shares with it. Errors are InvalidArgument naming the proto field ("tools[1].name: ...").
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "muse/v1/inference.pb.h"
#include "src/common/status.h"
#include "src/server/chat_formats.h"

namespace muse::server {

// How one request's output is handled.
struct ToolPlan {
  ToolMode mode = ToolMode::kNone;
  std::string function_name;  // kNamed
  bool parallel_tool_calls = true;
  // The forced call's schema came from here (kRequired: "tools"; kNamed:
  // "tools[<i>].parameters_json"): the constraint's compile errors are renamed to it.
  std::string schema_field;
  bool parse = false;         // messages input and ParsesOutput: text is split per sample
  bool keep_special = false;  // see KeepsSpecialTokens: the text is decoded with special tokens
};

// Checks `req`'s tools (non-empty unique names; parameters_json a JSON object, i.e. a schema) and
// tool_choice (a named function must be one of the tools; REQUIRED / named need tools, messages
// input and no response_format) and resolves the plan on `formats`. A forced call writes its
// schema into req->response_format (strict); keep_special sets skip_special_tokens = false.
absl::StatusOr<ToolPlan> ApplyToolChoice(const ChatFormats& formats, v1::GenerateRequest* req);

// A compile error of the forced call's constraint ("response_format.json_schema: ...") renamed to
// the field it came from (plan.schema_field); other statuses unchanged.
absl::Status RenameToolChoiceError(const absl::Status& status, const ToolPlan& plan);

// The per-sample src/chat pipelines of one request (plan.parse). Not thread-safe: one owner.
class SampleChatParsers {
 public:
  // `seed` makes the call ids deterministic (e.g. a hash of the request id).
  SampleChatParsers(const ChatFormats& formats, ToolPlan plan, uint64_t seed);

  // Streamed: rewrites each delta in place -- text becomes the new content, reasoning and
  // tool_calls are filled (a call's first fragment: index, id, name, empty arguments; then raw
  // argument text), and a STOP after a call becomes TOOL_CALLS. A delta with finish_reason set
  // ends its sample's parse.
  void Apply(std::map<int, v1::SampleDelta>* deltas);

  // Unary: one whole completion (its text) parsed at once, on a fresh parser.
  void ApplyWhole(v1::Completion* completion) const;

 private:
  std::unique_ptr<chat::ChatOutputParser> Make(int sample) const;

  const ChatFormats& formats_;
  const ToolPlan plan_;
  const uint64_t seed_;
  std::map<int, std::unique_ptr<chat::ChatOutputParser>> parsers_;  // by sample index
};

}  // namespace muse::server
