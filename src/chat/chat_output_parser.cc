#include "src/chat/chat_output_parser.h"

#include <utility>

namespace muse::chat {

ChatOutputParser::ChatOutputParser(std::optional<ReasoningParser> reasoning,
                                   std::unique_ptr<ToolCallParser> tools)
    : reasoning_(std::move(reasoning)), tools_(std::move(tools)) {}

void ChatOutputParser::Content(std::string_view text, bool finish, ChatOutputDelta* out) {
  if (!tools_) {
    if (!text.empty()) out->deltas.emplace_back().content = std::string(text);
    return;
  }
  std::vector<ChatDelta> deltas = text.empty() ? std::vector<ChatDelta>() : tools_->Feed(text);
  if (finish) {
    std::vector<ChatDelta> rest = tools_->Finish();
    deltas.insert(deltas.end(), std::make_move_iterator(rest.begin()),
                  std::make_move_iterator(rest.end()));
  }
  for (ChatDelta& d : deltas) {
    if (d.tool_call.has_value()) {
      if (max_tool_calls_ >= 0 && d.tool_call->index >= max_tool_calls_) continue;
      saw_tool_call_ = true;
    }
    out->deltas.push_back(std::move(d));
  }
}

ChatOutputDelta ChatOutputParser::Feed(std::string_view delta) {
  ChatOutputDelta out;
  if (!reasoning_) {
    Content(delta, /*finish=*/false, &out);
    return out;
  }
  ReasoningDelta r = reasoning_->Feed(delta);
  out.reasoning = std::move(r.reasoning);
  Content(r.content, /*finish=*/false, &out);
  return out;
}

ChatOutputDelta ChatOutputParser::Finish() {
  ChatOutputDelta out;
  std::string content;
  if (reasoning_) {
    ReasoningDelta r = reasoning_->Finish();
    out.reasoning = std::move(r.reasoning);
    content = std::move(r.content);
  }
  Content(content, /*finish=*/true, &out);
  return out;
}

ChatOutput ChatOutputParser::Parse(std::string_view output) {
  ChatOutput result;
  for (const ChatOutputDelta& d : {Feed(output), Finish()}) {
    result.reasoning += d.reasoning;
    Accumulate(d.deltas, &result.parsed);
  }
  return result;
}

}  // namespace muse::chat
