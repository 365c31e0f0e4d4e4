// Mistral tool calls, both tokenizer generations (told apart by what follows the marker):
//   v3:   `[TOOL_CALLS] [{"name": "f", "arguments": {...}}, {...}]`
//   v11+: `[TOOL_CALLS]f[ARGS]{...}`, the marker repeated for each parallel call.
// Call ids are 9 alphanumerics, as Mistral's templates require. Text before, between and after
// the calls is content; whitespace between consecutive calls and at the end is call syntax.
#include <string_view>

#include "src/chat/marker.h"
#include "src/chat/streaming_tool_parser.h"

namespace muse::chat::internal {
namespace {

constexpr std::string_view kToolCalls = "[TOOL_CALLS]";
constexpr std::string_view kArgs = "[ARGS]";
constexpr size_t kMaxNameBytes = 256;

bool IsNameByte(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.';
}

class MistralParser final : public StreamingToolParser {
 public:
  explicit MistralParser(uint64_t id_seed) : StreamingToolParser(id_seed, CallIdStyle::kMistral) {}

 private:
  enum class State { kText, kOpen, kListHeader, kNamed, kArguments, kTail, kListNext, kAfter };

  bool Step() override {
    switch (state_) {
      case State::kText:
        if (!ContentUpTo(kToolCalls)) return false;
        state_ = State::kOpen;
        return true;
      case State::kOpen: {  // buf_ starts with kToolCalls
        size_t i = kToolCalls.size();
        Skip(&i);
        if (i == buf_.size()) return eof_ ? NotACall() : false;
        list_ = buf_[i] == '[';
        header_pos_ = i + 1;
        first_in_list_ = true;
        state_ = list_ ? State::kListHeader : State::kNamed;
        return true;
      }
      case State::kListHeader: {
        const Scan scan = CommitCallObject(header_pos_);
        if (scan == Scan::kDone) {
          state_ = arguments_open() ? State::kArguments : State::kListNext;
          first_in_list_ = false;
          return true;
        }
        if (scan == Scan::kNeedMore && !eof_) return false;
        if (first_in_list_) return NotACall();
        state_ = State::kText;  // held from the `,`: all text
        return true;
      }
      case State::kNamed: {
        size_t i = kToolCalls.size();
        while (i < buf_.size() && i - kToolCalls.size() < kMaxNameBytes && IsNameByte(buf_[i])) {
          ++i;
        }
        const size_t name_size = i - kToolCalls.size();
        if (i == buf_.size() && name_size < kMaxNameBytes) return eof_ ? NotACall() : false;
        if (name_size == 0) return NotACall();
        const PrefixMatch args = MatchPrefix(std::string_view(buf_).substr(i), kArgs);
        if (args == PrefixMatch::kNo) return NotACall();
        if (args == PrefixMatch::kPartial || i + kArgs.size() == buf_.size()) {
          return eof_ ? NotACall() : false;
        }
        if (buf_[i + kArgs.size()] != '{') return NotACall();
        CommitCall(buf_.substr(kToolCalls.size(), name_size), i + kArgs.size());
        state_ = State::kArguments;
        return true;
      }
      case State::kArguments:
        if (!arguments_open()) {
          state_ = list_ ? State::kTail : State::kAfter;
          return true;
        }
        return StepArguments();
      case State::kTail:  // a call object that ends badly leaves the rest as text
        if (const std::optional<bool> ok = StepCallTail()) {
          state_ = *ok ? State::kListNext : State::kText;
          return true;
        }
        return false;
      case State::kListNext: {
        size_t i = 0;
        Skip(&i);
        if (i == buf_.size()) {
          if (eof_) Drop(i);  // cut off inside the list
          return false;
        }
        if (buf_[i] == ',') {
          header_pos_ = i + 1;
          state_ = State::kListHeader;
        } else if (buf_[i] == ']') {
          Drop(i + 1);
          state_ = State::kAfter;
        } else {
          state_ = State::kText;
        }
        return true;
      }
      case State::kAfter:
        if (const std::optional<bool> next = NextCallMarker(kToolCalls)) {
          state_ = *next ? State::kOpen : State::kText;
          return true;
        }
        return false;
    }
    return false;
  }

  // The marker is text, and so is what follows it until the next marker.
  bool NotACall() {
    EmitContent(kToolCalls.size());
    state_ = State::kText;
    return true;
  }

  State state_ = State::kText;
  bool list_ = false;           // v3 list form
  bool first_in_list_ = false;  // a bad first element makes the marker text
  size_t header_pos_ = 0;
};

}  // namespace

std::unique_ptr<ToolCallParser> MakeMistralParser(uint64_t id_seed) {
  return std::make_unique<MistralParser>(id_seed);
}

}  // namespace muse::chat::internal
