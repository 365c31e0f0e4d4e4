// Hermes / Qwen2.5 / Qwen3: `<tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>`,
// repeated for parallel calls; text around the calls is content. (In Qwen3 `<tool_call>` is one
// special token: the detokenizer must keep special tokens for this parser to see it.)
// Whitespace between consecutive calls, and after the last one at the end of the output, is
// call syntax; whitespace before text is content.
#include <string_view>

#include "src/chat/marker.h"
#include "src/chat/streaming_tool_parser.h"

namespace muse::chat::internal {
namespace {

constexpr std::string_view kOpen = "<tool_call>";
constexpr std::string_view kClose = "</tool_call>";

class HermesParser final : public StreamingToolParser {
 public:
  explicit HermesParser(uint64_t id_seed) : StreamingToolParser(id_seed, CallIdStyle::kOpenAi) {}

 private:
  enum class State { kText, kHeader, kArguments, kTail, kClose, kAfter };

  bool Step() override {
    switch (state_) {
      case State::kText:
        if (!ContentUpTo(kOpen)) return false;
        state_ = State::kHeader;
        return true;
      case State::kHeader: {  // buf_ starts with kOpen
        const Scan scan = CommitCallObject(kOpen.size());
        if (scan == Scan::kDone) {
          state_ = arguments_open() ? State::kArguments : State::kClose;
        } else if (scan == Scan::kMalformed || eof_) {
          EmitContent(kOpen.size());  // not a call: the tag is text, and so is what follows
          state_ = State::kText;
        } else {
          return false;
        }
        return true;
      }
      case State::kArguments:
        if (!arguments_open()) {
          state_ = State::kTail;
          return true;
        }
        return StepArguments();
      case State::kTail:  // a call object that ends badly leaves the rest as text
        if (const std::optional<bool> ok = StepCallTail()) {
          state_ = *ok ? State::kClose : State::kText;
          return true;
        }
        return false;
      case State::kClose: {
        size_t i = 0;
        Skip(&i);
        switch (MatchPrefix(std::string_view(buf_).substr(i), kClose)) {
          case PrefixMatch::kYes:
            Drop(i + kClose.size());
            state_ = State::kAfter;
            return true;
          case PrefixMatch::kPartial:
            if (eof_) Drop(buf_.size());  // cut off before the close tag: call syntax
            return false;
          case PrefixMatch::kNo:
            state_ = State::kText;
            return true;
        }
        return false;
      }
      case State::kAfter:
        if (const std::optional<bool> next = NextCallMarker(kOpen)) {
          state_ = *next ? State::kHeader : State::kText;
          return true;
        }
        return false;
    }
    return false;
  }

  State state_ = State::kText;
};

}  // namespace

std::unique_ptr<ToolCallParser> MakeHermesParser(uint64_t id_seed) {
  return std::make_unique<HermesParser>(id_seed);
}

}  // namespace muse::chat::internal
