#include "src/chat/streaming_tool_parser.h"

#include <utility>

#include "src/chat/marker.h"

namespace muse::chat::internal {

StreamingToolParser::StreamingToolParser(uint64_t id_seed, CallIdStyle id_style)
    : ids_(id_seed), id_style_(id_style) {}

std::vector<ChatDelta> StreamingToolParser::Feed(std::string_view delta) {
  buf_.append(delta);
  while (Step()) {
  }
  return std::exchange(out_, {});
}

std::vector<ChatDelta> StreamingToolParser::Finish() {
  eof_ = true;
  while (Step()) {
  }
  if (!buf_.empty()) EmitContent(buf_.size());  // a state left text undecided: never lose it
  return std::exchange(out_, {});
}

void StreamingToolParser::EmitContent(size_t n) {
  if (n == 0) return;
  if (out_.empty() || out_.back().tool_call.has_value()) out_.emplace_back();
  out_.back().content.append(buf_, 0, n);
  buf_.erase(0, n);
}

bool StreamingToolParser::ContentUpTo(std::string_view marker) {
  const size_t pos = buf_.find(marker);
  if (pos == std::string::npos) {
    EmitContent(buf_.size() - (eof_ ? 0 : HeldSuffixLength(buf_, marker)));
    return false;
  }
  EmitContent(pos);
  return true;
}

void StreamingToolParser::Drop(size_t n) { buf_.erase(0, n); }

std::optional<bool> StreamingToolParser::NextCallMarker(std::string_view marker) {
  size_t i = 0;
  Skip(&i);
  switch (MatchPrefix(std::string_view(buf_).substr(i), marker)) {
    case PrefixMatch::kYes:
      Drop(i);
      return true;
    case PrefixMatch::kPartial:
      if (!eof_) return std::nullopt;
      if (i == buf_.size()) Drop(i);  // trailing whitespace after the last call
      return false;
    case PrefixMatch::kNo:
      break;
  }
  return false;
}

std::optional<bool> StreamingToolParser::StepCallTail() {
  const Extent tail = ParseCallTail(buf_, 0);
  if (tail.scan == Scan::kDone) {
    Drop(tail.end);
    return true;
  }
  if (tail.scan == Scan::kMalformed || eof_) return false;
  return std::nullopt;
}

void StreamingToolParser::Skip(size_t* i) const {
  while (*i < buf_.size() && IsJsonWhitespace(buf_[*i])) ++*i;
}

void StreamingToolParser::OpenCall(std::string name) {
  ChatDelta d;
  d.tool_call.emplace();
  d.tool_call->index = next_index_++;
  d.tool_call->id = ids_.Next(id_style_);
  d.tool_call->name = std::move(name);
  out_.push_back(std::move(d));
}

void StreamingToolParser::EmitArguments(std::string_view text) {
  if (text.empty()) return;
  // Merge into the previous fragment of this call unless that one is the header (id + name).
  if (out_.empty() || !out_.back().tool_call.has_value() ||
      out_.back().tool_call->index != next_index_ - 1 || !out_.back().tool_call->name.empty()) {
    ChatDelta d;
    d.tool_call.emplace();
    d.tool_call->index = next_index_ - 1;
    out_.push_back(std::move(d));
  }
  out_.back().tool_call->arguments.append(text);
}

Scan StreamingToolParser::CommitCallObject(size_t pos) {
  if (held_.active) return ContinueArgumentsFirst();
  CallHeader h = ParseCallHeader(buf_, pos);
  if (h.scan != Scan::kDone) return h.scan;
  if (h.args_first) {
    held_.active = true;
    held_.args_begin = held_.scanned = h.end;
    held_.scanner = ExtentScanner();
    return ContinueArgumentsFirst();
  }
  Drop(h.end);
  OpenCall(std::move(h.name));
  if (h.no_args) {
    EmitArguments("{}");  // the client needs JSON arguments; the model wrote none
    args_open_ = false;
  } else {
    args_open_ = true;
    scanner_ = ExtentScanner();
  }
  return Scan::kDone;
}

Scan StreamingToolParser::ContinueArgumentsFirst() {
  // Scans only the new bytes: the held arguments may be long.
  if (!held_.scanner.done()) {
    held_.scanned += held_.scanner.Feed(std::string_view(buf_).substr(held_.scanned));
  }
  Scan scan = Scan::kNeedMore;
  std::string name;
  Extent tail;
  if (held_.scanner.done()) {
    tail = ParseCallTail(buf_, held_.scanned, &name);
    scan = tail.scan == Scan::kDone && name.empty() ? Scan::kMalformed : tail.scan;
  }
  if (scan == Scan::kNeedMore && !eof_) return scan;
  const HeldObject held = std::exchange(held_, HeldObject());
  if (scan != Scan::kDone) return scan;  // the caller treats kNeedMore at eof as not a call
  std::string arguments = buf_.substr(held.args_begin, held.scanned - held.args_begin);
  Drop(tail.end);
  OpenCall(std::move(name));
  EmitArguments(arguments);
  args_open_ = false;
  return Scan::kDone;
}

void StreamingToolParser::CommitCall(std::string name, size_t args_pos) {
  Drop(args_pos);
  OpenCall(std::move(name));
  args_open_ = true;
  scanner_ = ExtentScanner();
}

bool StreamingToolParser::StepArguments() {
  if (buf_.empty()) return false;
  const size_t used = scanner_.Feed(buf_);
  EmitArguments(std::string_view(buf_).substr(0, used));
  buf_.erase(0, used);
  if (scanner_.done()) args_open_ = false;
  return true;
}

}  // namespace muse::chat::internal
