#include "src/chat/reasoning_parser.h"

#include <utility>

#include "src/chat/marker.h"

namespace muse::chat {

absl::StatusOr<ReasoningParser> ReasoningParser::Create(ReasoningOptions options) {
  if (options.start_tag.empty()) {
    return absl::InvalidArgumentError("reasoning start_tag: must not be empty");
  }
  if (options.end_tag.empty()) {
    return absl::InvalidArgumentError("reasoning end_tag: must not be empty");
  }
  if (options.start_tag == options.end_tag) {
    return absl::InvalidArgumentError("reasoning end_tag: must differ from start_tag");
  }
  return ReasoningParser(std::move(options));
}

ReasoningParser::ReasoningParser(ReasoningOptions options) : options_(std::move(options)) {
  switch (options_.start) {
    case ReasoningStart::kModelOpens:
      state_ = State::kStart;
      break;
    case ReasoningStart::kInsideBlock:
      state_ = State::kReasoning;
      break;
    case ReasoningStart::kDisabled:
      state_ = State::kContent;
      break;
  }
}

ReasoningDelta ReasoningParser::Feed(std::string_view delta) {
  ReasoningDelta out;
  held_.append(delta);
  Run(/*eof=*/false, &out);
  return out;
}

ReasoningDelta ReasoningParser::Finish() {
  ReasoningDelta out;
  Run(/*eof=*/true, &out);
  return out;
}

void ReasoningParser::Run(bool eof, ReasoningDelta* out) {
  if (state_ == State::kStart) {
    switch (MatchPrefix(held_, options_.start_tag)) {
      case PrefixMatch::kYes:
        held_.erase(0, options_.start_tag.size());
        state_ = State::kReasoning;
        break;
      case PrefixMatch::kPartial:
        if (!eof) return;  // could still become the start tag
        state_ = State::kContent;
        break;
      case PrefixMatch::kNo:
        state_ = State::kContent;
        break;
    }
  }
  if (state_ == State::kReasoning) {
    const size_t end = held_.find(options_.end_tag);
    if (end == std::string::npos) {
      const size_t keep = eof ? 0 : HeldSuffixLength(held_, options_.end_tag);
      out->reasoning.append(held_, 0, held_.size() - keep);
      held_.erase(0, held_.size() - keep);
      return;
    }
    out->reasoning.append(held_, 0, end);
    held_.erase(0, end + options_.end_tag.size());
    state_ = State::kContent;
  }
  out->content.append(held_);
  held_.clear();
}

ReasoningDelta ReasoningParser::Parse(std::string_view output) const {
  ReasoningDelta out;
  std::string_view rest = output;
  switch (options_.start) {
    case ReasoningStart::kDisabled:
      out.content = std::string(output);
      return out;
    case ReasoningStart::kModelOpens:
      if (rest.substr(0, options_.start_tag.size()) != options_.start_tag) {
        out.content = std::string(output);
        return out;
      }
      rest.remove_prefix(options_.start_tag.size());
      break;
    case ReasoningStart::kInsideBlock:
      break;
  }
  const size_t end = rest.find(options_.end_tag);
  if (end == std::string_view::npos) {
    out.reasoning = std::string(rest);
    return out;
  }
  out.reasoning = std::string(rest.substr(0, end));
  out.content = std::string(rest.substr(end + options_.end_tag.size()));
  return out;
}

}  // namespace muse::chat
