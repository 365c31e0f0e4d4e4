#include "src/chat/tool_call_parser.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "tests/chat/chat_test_util.h"
#include "tests/chat/fixtures.h"

namespace muse::chat {
namespace {

bool IsAlnum(const std::string& s) {
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

TEST(ToolCallParserTest, FixturesParseExactly) {
  for (const testing::Fixture& f : testing::ToolFixtures()) {
    SCOPED_TRACE(f.label);
    const ParsedOutput got = testing::ParseTools(f.parser, 1, f.output);
    EXPECT_EQ(got.content, f.content);
    ASSERT_EQ(got.calls.size(), f.calls.size());
    for (size_t i = 0; i < f.calls.size(); ++i) {
      EXPECT_EQ(got.calls[i].name, f.calls[i].name);
      EXPECT_EQ(got.calls[i].arguments, f.calls[i].arguments);  // raw, not re-serialised
      if (f.parser == "mistral") {
        EXPECT_EQ(got.calls[i].id.size(), 9u);
        EXPECT_TRUE(IsAlnum(got.calls[i].id)) << got.calls[i].id;
      } else {
        EXPECT_EQ(got.calls[i].id.size(), 29u);
        EXPECT_TRUE(absl::StartsWith(got.calls[i].id, "call_")) << got.calls[i].id;
        EXPECT_TRUE(IsAlnum(got.calls[i].id.substr(5))) << got.calls[i].id;
      }
    }
    for (size_t i = 1; i < got.calls.size(); ++i) {
      EXPECT_NE(got.calls[i].id, got.calls[i - 1].id);
    }
  }
}

TEST(ToolCallParserTest, CompleteArgumentsAreValidJsonAndTruncatedOnesAreNot) {
  for (const testing::Fixture& f : testing::ToolFixtures()) {
    const ParsedOutput got = testing::ParseTools(f.parser, 1, f.output);
    const bool truncated = absl::StrContains(f.label, "truncated");
    for (const ToolCall& call : got.calls) {
      EXPECT_EQ(ArgumentsAreValidJson(call), !truncated) << f.label << ": " << call.arguments;
    }
  }
}

TEST(ToolCallParserTest, IdsAreSeeded) {
  const std::string out = R"(<tool_call>{"name": "f", "arguments": {}}</tool_call>)";
  EXPECT_EQ(testing::ParseTools("hermes", 7, out).calls[0].id,
            testing::ParseTools("hermes", 7, out).calls[0].id);
  EXPECT_NE(testing::ParseTools("hermes", 7, out).calls[0].id,
            testing::ParseTools("hermes", 8, out).calls[0].id);
}

TEST(ToolCallParserTest, FactoryKnowsTheNamesAndRefusesOthers) {
  for (const std::string& name : ToolCallParserNames()) {
    EXPECT_TRUE(MakeToolCallParser(name, 0).ok()) << name;
  }
  const auto bad = MakeToolCallParser("qwen", 0);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(),
            "tool_call_parser: unknown parser \"qwen\" (known: hermes, llama3_json, mistral)");
}

// The first fragment comes as soon as the name and the arguments' `{` are known; arguments then
// stream as the model writes them, and content is held only while it may be a marker.
TEST(ToolCallParserTest, StreamsHeaderThenArgumentFragments) {
  auto parser = MakeToolCallParser("hermes", 3).value();
  std::vector<ChatDelta> d = parser->Feed("Checking <tool_");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].content, "Checking ");
  EXPECT_TRUE(parser->Feed("call>\n{\"name\": \"get_weather\", ").empty());
  d = parser->Feed("\"arguments\": {\"ci");
  ASSERT_EQ(d.size(), 2u);
  ASSERT_TRUE(d[0].tool_call.has_value());
  EXPECT_EQ(d[0].tool_call->index, 0);
  EXPECT_EQ(d[0].tool_call->name, "get_weather");
  EXPECT_FALSE(d[0].tool_call->id.empty());
  EXPECT_EQ(d[0].tool_call->arguments, "");
  EXPECT_EQ(d[1].tool_call->arguments, "{\"ci");
  EXPECT_TRUE(d[1].tool_call->name.empty());
  d = parser->Feed("ty\": \"Paris\"}}\n</tool_call>");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].tool_call->arguments, "ty\": \"Paris\"}");  // the wrapper's `}` is not sent
  EXPECT_TRUE(parser->Finish().empty());
}

// Arguments written before the name are held until the object closes, then sent at once.
TEST(ToolCallParserTest, ArgumentsFirstCallIsSentWhenComplete) {
  auto parser = MakeToolCallParser("hermes", 3).value();
  EXPECT_TRUE(parser->Feed("<tool_call>\n{\"arguments\": {\"city\": ").empty());
  EXPECT_TRUE(parser->Feed("\"Paris\"}, \"name\": \"get_weather\"").empty());
  std::vector<ChatDelta> d = parser->Feed("}\n</tool_call>");
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0].tool_call->name, "get_weather");
  EXPECT_EQ(d[1].tool_call->arguments, R"({"city": "Paris"})");
}

TEST(ToolCallParserTest, MalformedCallIsReleasedAsContentAsSoonAsItIsDecided) {
  auto parser = MakeToolCallParser("hermes", 3).value();
  EXPECT_TRUE(parser->Feed("<tool_call>\n").empty());
  std::vector<ChatDelta> d = parser->Feed("Sorry");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].content, "<tool_call>\nSorry");
}

TEST(ToolCallParserTest, LlamaTextIsNotHeld) {
  auto parser = MakeToolCallParser("llama3_json", 0).value();
  std::vector<ChatDelta> d = parser->Feed("Hi");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].content, "Hi");
}

TEST(ToolCallParserTest, MistralToolWithoutParametersKeepsEmptyObject) {
  const ParsedOutput got = testing::ParseTools("mistral", 0, "[TOOL_CALLS]now[ARGS]{}");
  ASSERT_EQ(got.calls.size(), 1u);
  EXPECT_EQ(got.calls[0].arguments, "{}");
}

TEST(ToolCallParserTest, LongHeaderIsNotACall) {
  const std::string out =
      "<tool_call>{\"name\": \"" + std::string(5000, 'a') + "\", \"arguments\": {}}</tool_call>";
  const ParsedOutput got = testing::ParseTools("hermes", 0, out);
  EXPECT_TRUE(got.calls.empty());
  EXPECT_EQ(got.content, out);
}

TEST(ToolCallParserTest, AccumulateMergesFragmentsPerIndex) {
  std::vector<ChatDelta> d(4);
  d[0].content = "a";
  d[1].tool_call = ToolCallDelta{0, "id0", "f", ""};
  d[2].tool_call = ToolCallDelta{0, "", "", "{\"x\""};
  d[3].tool_call = ToolCallDelta{0, "", "", ": 1}"};
  ParsedOutput out;
  Accumulate(d, &out);
  EXPECT_EQ(out.content, "a");
  ASSERT_EQ(out.calls.size(), 1u);
  EXPECT_EQ(out.calls[0].id, "id0");
  EXPECT_EQ(out.calls[0].arguments, "{\"x\": 1}");
}

}  // namespace
}  // namespace muse::chat
