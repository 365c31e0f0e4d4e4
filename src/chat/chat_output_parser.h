// One choice's output through the whole pipeline: the reasoning parser (optional), then the tool
// call parser on its content (optional: absent for tool_choice "none" or no tools). Feed
// detokenized text with special tokens kept. The server applies stop strings to content only,
// i.e. between the two stages (see README.md).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "src/chat/reasoning_parser.h"
#include "src/chat/tool_call_parser.h"

namespace muse::chat {

struct ChatOutputDelta {
  std::string reasoning;          // sent before `deltas`
  std::vector<ChatDelta> deltas;  // content and tool-call fragments, in order
};

struct ChatOutput {
  std::string reasoning;
  ParsedOutput parsed;
};

class ChatOutputParser {
 public:
  ChatOutputParser(std::optional<ReasoningParser> reasoning, std::unique_ptr<ToolCallParser> tools);

  ChatOutputDelta Feed(std::string_view delta);
  ChatOutputDelta Finish();
  // The whole output at once, on a fresh parser.
  ChatOutput Parse(std::string_view output);

  // finish_reason "tool_calls" when true at the end.
  bool saw_tool_call() const { return saw_tool_call_; }

  // parallel_tool_calls false: only the first `n` calls (indexes 0..n-1) come out; the fragments
  // of later calls are dropped, not turned into content (vLLM's behaviour). Before the first Feed.
  void set_max_tool_calls(int n) { max_tool_calls_ = n; }

 private:
  void Content(std::string_view text, bool finish, ChatOutputDelta* out);

  std::optional<ReasoningParser> reasoning_;
  std::unique_ptr<ToolCallParser> tools_;
  bool saw_tool_call_ = false;
  int max_tool_calls_ = -1;  // < 0: no limit
};

}  // namespace muse::chat
