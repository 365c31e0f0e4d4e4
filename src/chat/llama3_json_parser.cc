// Llama 3.x JSON tool calls: the output is either text or, from its start (after optional
// whitespace and an optional `<|python_tag|>`), calls `{"name": "f", "parameters": {...}}`
// ("arguments" is accepted too) separated by `;`, optionally ended by `<|eom_id|>`. JSON later
// in a text answer is not a call. After a malformed call, or text after the calls, the rest of
// the output is content.
#include <string_view>

#include "src/chat/marker.h"
#include "src/chat/streaming_tool_parser.h"

namespace muse::chat::internal {
namespace {

constexpr std::string_view kPythonTag = "<|python_tag|>";
constexpr std::string_view kEom = "<|eom_id|>";

class Llama3JsonParser final : public StreamingToolParser {
 public:
  explicit Llama3JsonParser(uint64_t id_seed)
      : StreamingToolParser(id_seed, CallIdStyle::kOpenAi) {}

 private:
  enum class State { kStart, kHeader, kArguments, kTail, kAfter, kText };

  bool Step() override {
    switch (state_) {
      case State::kStart: {
        size_t i = 0;
        Skip(&i);
        if (i == buf_.size()) {
          if (!eof_) return false;
          state_ = State::kText;
          return true;
        }
        const PrefixMatch tag = MatchPrefix(std::string_view(buf_).substr(i), kPythonTag);
        if (tag == PrefixMatch::kPartial && !eof_) return false;
        if (tag == PrefixMatch::kYes) {
          header_pos_ = i + kPythonTag.size();
          state_ = State::kHeader;
        } else {
          header_pos_ = i;
          state_ = buf_[i] == '{' ? State::kHeader : State::kText;
        }
        return true;
      }
      case State::kHeader: {
        const Scan scan = CommitCallObject(header_pos_);
        if (scan == Scan::kDone) {
          state_ = arguments_open() ? State::kArguments : State::kAfter;
        } else if (scan == Scan::kMalformed || eof_) {
          state_ = State::kText;  // not a call: all that is held, and the rest, is text
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
          state_ = *ok ? State::kAfter : State::kText;
          return true;
        }
        return false;
      case State::kAfter: {
        size_t i = 0;
        Skip(&i);
        if (i == buf_.size()) {
          if (eof_) Drop(i);  // trailing whitespace after the last call
          return false;
        }
        if (buf_[i] == ';') {
          header_pos_ = i + 1;  // held with the separator, so a bad call keeps it as text
          state_ = State::kHeader;
          return true;
        }
        const PrefixMatch eom = MatchPrefix(std::string_view(buf_).substr(i), kEom);
        if (eom == PrefixMatch::kPartial && !eof_) return false;
        if (eom == PrefixMatch::kYes) Drop(i + kEom.size());
        state_ = State::kText;
        return true;
      }
      case State::kText:
        EmitContent(buf_.size());
        return false;
    }
    return false;
  }

  State state_ = State::kStart;
  size_t header_pos_ = 0;  // where the call object (after `<|python_tag|>` or `;`) starts
};

}  // namespace

std::unique_ptr<ToolCallParser> MakeLlama3JsonParser(uint64_t id_seed) {
  return std::make_unique<Llama3JsonParser>(id_seed);
}

}  // namespace muse::chat::internal
