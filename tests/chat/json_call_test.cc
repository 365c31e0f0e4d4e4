// The prefix scanners behind the streaming tool parsers (src/chat/json_call.h).
#include "src/chat/json_call.h"

#include <gtest/gtest.h>

#include <string>

namespace muse::chat::internal {
namespace {

TEST(JsonCallTest, HeaderCommitsAtTheArgumentsBrace) {
  const std::string text =
      R"(  { "type" : "function", "name":"get_weather" , "arguments": {"a": 1}})";
  const CallHeader h = ParseCallHeader(text, 0);
  ASSERT_EQ(h.scan, Scan::kDone);
  EXPECT_EQ(h.name, "get_weather");
  EXPECT_EQ(text.substr(h.end), R"({"a": 1}})");
  EXPECT_FALSE(h.no_args);
}

TEST(JsonCallTest, EveryPrefixOfAHeaderNeedsMore) {
  const std::string text = R"({"name": "f\"\u00e9", "parameters": {)";
  for (size_t n = 0; n < text.size(); ++n) {
    EXPECT_EQ(ParseCallHeader(text.substr(0, n), 0).scan, Scan::kNeedMore) << text.substr(0, n);
  }
  const CallHeader h = ParseCallHeader(text, 0);
  ASSERT_EQ(h.scan, Scan::kDone);
  EXPECT_EQ(h.name, "f\"\xc3\xa9");  // decoded by nlohmann::json
}

TEST(JsonCallTest, NotHeaders) {
  for (const char* text : {
           "x",                                        // not an object
           "{}",                                       // no name
           R"({"name": "", "arguments": {}})",         // empty name
           R"({"name": "f", "name": "g"})",            // two names
           R"({"name": 1})",                           // not a string
           R"({"name": "f", "arguments": "{}"})",      // stringified arguments
           R"({"name": "f", "arguments": null})",      // not an object
           R"({"name": "f" "arguments": {}})",         // missing comma
           R"({"name": "a\qb", "arguments": {}})",     // bad escape
           "{\"name\": \"a\nb\", \"arguments\": {}}",  // raw control character
       }) {
    EXPECT_EQ(ParseCallHeader(text, 0).scan, Scan::kMalformed) << text;
  }
}

TEST(JsonCallTest, ArgumentsBeforeTheName) {
  const std::string text = R"({"arguments": {"a": "}"}, "name": "f"})";
  const CallHeader h = ParseCallHeader(text, 0);
  ASSERT_EQ(h.scan, Scan::kDone);
  EXPECT_TRUE(h.args_first);
  EXPECT_EQ(h.end, 14u);
  std::string name;
  const Extent tail = ParseCallTail(text, text.find(", \"name\""), &name);
  ASSERT_EQ(tail.scan, Scan::kDone);
  EXPECT_EQ(name, "f");
  EXPECT_EQ(tail.end, text.size());
  name.clear();
  EXPECT_EQ(ParseCallTail(R"(, "name": 3})", 0, &name).scan, Scan::kMalformed);
  EXPECT_EQ(ParseCallTail(R"(, "name": "a", "name": "b"})", 0, &name).scan, Scan::kMalformed);
}

TEST(JsonCallTest, CallWithoutArguments) {
  const CallHeader h = ParseCallHeader(R"({"name": "now"} tail)", 0);
  ASSERT_EQ(h.scan, Scan::kDone);
  EXPECT_TRUE(h.no_args);
  EXPECT_EQ(h.end, 15u);
}

TEST(JsonCallTest, HeaderCapIsDecidedByPosition) {
  const std::string long_name = "{\"name\": \"" + std::string(kMaxHeaderBytes, 'a');
  EXPECT_EQ(ParseCallHeader(long_name, 0).scan, Scan::kMalformed);
  EXPECT_EQ(ParseCallHeader(long_name.substr(0, kMaxHeaderBytes), 0).scan, Scan::kNeedMore);
}

TEST(JsonCallTest, TailSkipsMembersOfAnyValue) {
  const std::string text = R"( , "id": "a}b", "n": -1.5e2, "o": {"x": [1, "]"]}, "t": true } rest)";
  const Extent e = ParseCallTail(text, 0);
  ASSERT_EQ(e.scan, Scan::kDone);
  EXPECT_EQ(text.substr(e.end), " rest");
  EXPECT_EQ(ParseCallTail(R"(, "n": 12)", 0).scan, Scan::kNeedMore);  // the number may go on
  EXPECT_EQ(ParseCallTail(R"(, "n": 1-2})", 0).scan, Scan::kMalformed);
  EXPECT_EQ(ParseCallTail(" ]", 0).scan, Scan::kMalformed);
}

TEST(JsonCallTest, ExtentScannerTracksStringsAndEscapesAcrossPieces) {
  const std::string text = R"({"a": "}\"{\\", "b": [{"c": "]"}], "d": "\\\""} after)";
  const size_t end = text.find(" after");
  for (size_t piece = 1; piece <= text.size(); ++piece) {
    ExtentScanner scanner;
    size_t consumed = 0;
    for (size_t i = 0; i < text.size() && !scanner.done(); i += piece) {
      consumed += scanner.Feed(std::string_view(text).substr(i, piece));
    }
    ASSERT_TRUE(scanner.done()) << piece;
    EXPECT_EQ(consumed, end) << piece;
  }
}

}  // namespace
}  // namespace muse::chat::internal
