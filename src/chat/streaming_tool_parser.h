// The machinery the format parsers share (internal to src/chat): a buffer of undecided output,
// the emission of merged deltas, and the states of one JSON call object (header, arguments,
// tail). Each format is a small state machine over the front of the buffer whose every decision
// depends only on the text seen so far, so any split of the output gives the same result.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "src/chat/json_call.h"
#include "src/chat/tool_call_parser.h"

namespace muse::chat::internal {

class StreamingToolParser : public ToolCallParser {
 public:
  StreamingToolParser(uint64_t id_seed, CallIdStyle id_style);
  std::vector<ChatDelta> Feed(std::string_view delta) final;
  std::vector<ChatDelta> Finish() final;

 protected:
  // Decides what it can at the front of buf_ (eof_ is set once the output ended). Returns false
  // when nothing more can be decided without more text (at eof: when the buffer is settled).
  virtual bool Step() = 0;

  void EmitContent(size_t n);  // buf_[0, n) as content
  // Emits the content before `marker` and returns true when buf_ holds it (buf_ then starts with
  // it); otherwise emits all but a possible partial marker at the end (all of it at eof) and
  // returns false.
  bool ContentUpTo(std::string_view marker);
  void Drop(size_t n);         // buf_[0, n) is call syntax
  void Skip(size_t* i) const;  // past JSON whitespace in buf_

  // Tries to commit a call object whose `{` (after whitespace) is at buf_[pos]. kDone: the
  // header is dropped and the call opened; arguments_open() tells whether its arguments follow
  // (false for `{"name": "f"}`, which gets arguments `{}`, and for arguments written before the
  // name: that whole object is held until complete, then sent at once). Call again with the
  // same pos after kNeedMore.
  Scan CommitCallObject(size_t pos);
  // Same for a call whose name was parsed by the format itself; buf_[args_pos] is the `{`.
  void CommitCall(std::string name, size_t args_pos);
  bool arguments_open() const { return args_open_; }

  // After a call: whitespace, then `marker` opening the next one (true: the whitespace is
  // dropped, buf_ starts with the marker) or anything else, text (false); nullopt: needs more.
  // Whitespace alone at the end of the output is dropped (false).
  std::optional<bool> NextCallMarker(std::string_view marker);
  // After a call's arguments: the rest of its object up to `}`. true: dropped; false: the object
  // ended badly, or the output ended inside it (the rest is text); nullopt: needs more text.
  std::optional<bool> StepCallTail();

  // Streams argument bytes up to the closing `}`. Returns false when it needs more text (or
  // the output ended inside them: a truncated call). Sets arguments_open() false at the end.
  bool StepArguments();

  std::string buf_;
  bool eof_ = false;

 private:
  // An arguments-first object being held: where its arguments start and how far they are scanned.
  struct HeldObject {
    bool active = false;
    size_t args_begin = 0;
    size_t scanned = 0;
    ExtentScanner scanner;
  };
  Scan ContinueArgumentsFirst();
  void OpenCall(std::string name);
  void EmitArguments(std::string_view text);

  std::vector<ChatDelta> out_;
  CallIdGenerator ids_;
  CallIdStyle id_style_;
  int next_index_ = 0;
  bool args_open_ = false;
  ExtentScanner scanner_;
  HeldObject held_;
};

std::unique_ptr<ToolCallParser> MakeHermesParser(uint64_t id_seed);
std::unique_ptr<ToolCallParser> MakeLlama3JsonParser(uint64_t id_seed);
std::unique_ptr<ToolCallParser> MakeMistralParser(uint64_t id_seed);

}  // namespace muse::chat::internal
