// Splits model output into a reasoning channel and content, for models that think inside a
// `<think> ... </think>` block (Qwen3, DeepSeek-R1). Protocol-neutral: the server maps the two
// channels to `reasoning_content` (HTTP) and the reasoning field of gRPC samples.
//
// Streaming contract: Feed() returns what each delta decides; only a possible partial end (or
// start) tag is held back, never more, and Finish() flushes it. For every split of an output, the
// concatenated Feed()/Finish() results equal Parse() of the whole output (tested).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace muse::chat {

enum class ReasoningStart {
  // The model opens the block itself: a start tag at the very first byte of the output opens
  // reasoning; output that does not begin with it is all content.
  kModelOpens,
  // The chat template put the start tag into the prompt: output begins inside the block.
  kInsideBlock,
  // enable_thinking=false (the template wrote an empty block into the prompt): all content.
  kDisabled,
};

struct ReasoningOptions {
  std::string start_tag = "<think>";
  std::string end_tag = "</think>";
  ReasoningStart start = ReasoningStart::kModelOpens;
};

// One step's output. Within an output reasoning always comes before content, so one pair is
// enough to keep the order.
struct ReasoningDelta {
  std::string reasoning;
  std::string content;
};

// Semantics (streamed and not): the tags are removed and every other byte is kept, whitespace
// included (the server may trim the newlines Qwen3 writes after `</think>`). Text after the end
// tag is content, even if it holds another start tag. An output that ends inside the block (the
// budget or max_tokens ran out) is all reasoning. A tool call written inside the block stays in
// the reasoning (tool calls are parsed from content only), so it is visible, not lost.
class ReasoningParser {
 public:
  // InvalidArgument naming the field when a tag is empty (or they are equal).
  static absl::StatusOr<ReasoningParser> Create(ReasoningOptions options);

  ReasoningDelta Feed(std::string_view delta);
  ReasoningDelta Finish();

  // The whole output at once (independent of the streaming state; the parser may be fresh).
  ReasoningDelta Parse(std::string_view output) const;

  // True once the end tag was seen (or reasoning never applied): later text is content.
  bool in_content() const { return state_ == State::kContent; }

 private:
  enum class State { kStart, kReasoning, kContent };
  explicit ReasoningParser(ReasoningOptions options);
  void Run(bool eof, ReasoningDelta* out);

  ReasoningOptions options_;
  State state_;
  std::string held_;  // undecided text: a partial start tag, or a partial end tag in reasoning
};

}  // namespace muse::chat
