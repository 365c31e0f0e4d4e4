// The JSON pieces of a tool call, scanned from text that may still be incomplete.
//
// Why a scanner of our own: nlohmann::json parses complete documents only. While streaming we
// must decide, from a prefix, whether text can still be a call header (to hold it) or cannot
// (to release it as content), and where the arguments object ends, without waiting for the
// whole output. These functions track just strings, escapes and depth; nlohmann::json decodes
// the strings they delimit (keys, the name) and validates finished arguments.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace muse::chat::internal {

// kNeedMore: the text so far is a consistent prefix; more text decides.
enum class Scan { kDone, kNeedMore, kMalformed };

// Headers longer than this are not calls (bounds what a parser holds back).
inline constexpr size_t kMaxHeaderBytes = 4096;

struct CallHeader {
  Scan scan = Scan::kNeedMore;
  std::string name;
  // kDone: offset of the `{` opening the arguments; with no_args, offset just past the `}`
  // closing the call object.
  size_t end = 0;
  bool no_args = false;  // `{"name": "f"}`: a call without an arguments member
  // The arguments came before any name (Hermes 2 Pro writes `{"arguments": {...}, "name": "f"}`):
  // `end` is the `{` of the arguments and the name is still to be found in the tail.
  bool args_first = false;
};

// Parses a call object's header at text[pos]: `{`, members whose values are strings (one of
// them "name", non-empty), then `"arguments"` or `"parameters"` and `:`, up to the `{` of the
// arguments object (see args_first when no name came before). Whitespace is allowed between
// tokens.
CallHeader ParseCallHeader(std::string_view full, size_t pos);

struct Extent {
  Scan scan = Scan::kNeedMore;
  size_t end = 0;  // kDone: offset just past the piece
};

// The rest of a call object after its arguments: members (any JSON values) then `}`. With
// `name`, a "name" member's string is stored there (it must be a non-empty string, once).
Extent ParseCallTail(std::string_view full, size_t pos, std::string* name = nullptr);

// A JSON string literal starting at text[pos] == '"'.
Extent ScanString(std::string_view text, size_t pos);

// Skips any JSON value's extent at text[pos] (numbers and literals end at the first byte that
// cannot continue them, so at the end of text they need more).
Extent SkipValue(std::string_view text, size_t pos);

// Finds the end of a JSON object or array fed in pieces: tracks strings, escapes and depth (it
// does not validate; nlohmann::json does that once the extent is known).
class ExtentScanner {
 public:
  // Consumes bytes of `text` up to and including the closing bracket; returns how many.
  size_t Feed(std::string_view text);
  bool done() const { return done_; }

 private:
  int depth_ = 0;
  bool in_string_ = false;
  bool escape_ = false;
  bool done_ = false;
};

}  // namespace muse::chat::internal
