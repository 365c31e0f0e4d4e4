// libFuzzer target: the chat-template lexer, parser, validator and interpreter
// (ChatTemplate::Parse + Render). The input is the template source; it is rendered against a
// fixed chat context (system/user/assistant turns, list content, tool calls, tools, kwargs).
//
// Invariants: Parse and Render fail only with InvalidArgument; nothing crashes, leaks or hangs.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "src/tokenizer/jinja/chat_template.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

const nlohmann::ordered_json& Context() {
  static const auto* ctx = new nlohmann::ordered_json(nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "You are helpful."},
      {"role": "user", "content": "Hi! What's 2+2?"},
      {"role": "assistant", "content": "4", "tool_calls": [{"type": "function", "function":
        {"name": "add", "arguments": {"a": 2, "b": 2}}}]},
      {"role": "tool", "content": "{\"sum\": 4}", "name": "add"},
      {"role": "user", "content": [{"type": "text", "text": "and this?"}, {"type": "image"}]}
    ],
    "tools": [{"type": "function", "function": {"name": "add", "description": "Adds.",
      "parameters": {"type": "object", "properties": {"a": {"type": "number"}}}}}],
    "add_generation_prompt": true,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "date_string": "26 Jul 2024",
    "n": 3,
    "x": null
  })"));
  return *ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto tmpl =
      muse::jinja::ChatTemplate::Parse(std::string(reinterpret_cast<const char*>(data), size));
  if (!tmpl.ok()) {
    Check(tmpl.status().code() == absl::StatusCode::kInvalidArgument, "parse error code");
    return 0;
  }
  auto out = tmpl->Render(Context());
  if (!out.ok()) {
    Check(out.status().code() == absl::StatusCode::kInvalidArgument, "render error code");
  }
  return 0;
}
