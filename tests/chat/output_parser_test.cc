#include <gtest/gtest.h>

#include "src/chat/chat_output_parser.h"
#include "src/chat/forced_tool_call.h"
#include "tests/chat/chat_test_util.h"

namespace muse::chat {
namespace {

ChatOutputParser Make(std::optional<ReasoningStart> start, const std::string& tools) {
  std::optional<ReasoningParser> reasoning;
  if (start) {
    ReasoningOptions o;
    o.start = *start;
    reasoning = ReasoningParser::Create(o).value();
  }
  std::unique_ptr<ToolCallParser> parser;
  if (!tools.empty()) parser = MakeToolCallParser(tools, 11).value();
  return ChatOutputParser(std::move(reasoning), std::move(parser));
}

// Streams and checks that no reasoning comes after content or a call (clients show it first).
ChatOutput Stream(ChatOutputParser& parser, const testing::Chunks& chunks, bool* saw_call) {
  ChatOutput out;
  bool past_reasoning = false;
  auto add = [&](const ChatOutputDelta& d) {
    if (!d.reasoning.empty()) {
      EXPECT_FALSE(past_reasoning) << "reasoning after content";
    }
    if (!d.deltas.empty()) past_reasoning = true;
    out.reasoning += d.reasoning;
    Accumulate(d.deltas, &out.parsed);
  };
  for (const std::string& c : chunks) add(parser.Feed(c));
  add(parser.Finish());
  *saw_call = parser.saw_tool_call();
  return out;
}

TEST(ChatOutputParserTest, ReasoningThenToolCallsEverySplit) {
  const std::string output =
      "<think>\nweather needs a tool 🌦\n</think>\n\nChecking.<tool_call>\n{\"name\": "
      "\"get_weather\", \"arguments\": {\"city\": \"Zürich\"}}\n</tool_call>";
  ChatOutput whole = Make(ReasoningStart::kModelOpens, "hermes").Parse(output);
  EXPECT_EQ(whole.reasoning, "\nweather needs a tool 🌦\n");
  EXPECT_EQ(whole.parsed.content, "\n\nChecking.");
  ASSERT_EQ(whole.parsed.calls.size(), 1u);
  EXPECT_EQ(whole.parsed.calls[0].arguments, R"({"city": "Zürich"})");
  for (const testing::Chunks& chunks : testing::AllSplits(output, 100)) {
    ChatOutputParser parser = Make(ReasoningStart::kModelOpens, "hermes");
    bool saw_call = false;
    const ChatOutput got = Stream(parser, chunks, &saw_call);
    EXPECT_TRUE(saw_call);
    EXPECT_EQ(got.reasoning, whole.reasoning);
    testing::ExpectSameParse(got.parsed, whole.parsed);
    if (HasFailure()) return;
  }
}

TEST(ChatOutputParserTest, WithoutToolParserContentPassesThrough) {
  const std::string output =
      "plan</think><tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>";
  ChatOutputParser parser = Make(ReasoningStart::kInsideBlock, "");
  bool saw_call = false;
  const ChatOutput got = Stream(parser, testing::ByByte(output), &saw_call);
  EXPECT_FALSE(saw_call);
  EXPECT_EQ(got.reasoning, "plan");
  EXPECT_EQ(got.parsed.content, "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>");
  EXPECT_TRUE(got.parsed.calls.empty());
}

TEST(ChatOutputParserTest, WithoutReasoningEverythingGoesToTheToolParser) {
  ChatOutputParser parser(std::nullopt, MakeRequiredToolCallParser(1, CallIdStyle::kOpenAi));
  const ChatOutput got = parser.Parse(R"([{"name": "f", "parameters": {"a": 1}}])");
  EXPECT_TRUE(parser.saw_tool_call());
  EXPECT_EQ(got.reasoning, "");
  ASSERT_EQ(got.parsed.calls.size(), 1u);
  EXPECT_EQ(got.parsed.calls[0].arguments, R"({"a": 1})");
}

TEST(ChatOutputParserTest, PlainTextNoCall) {
  ChatOutputParser parser = Make(ReasoningStart::kModelOpens, "llama3_json");
  const ChatOutput got = parser.Parse("Just text.");
  EXPECT_FALSE(parser.saw_tool_call());
  EXPECT_EQ(got.parsed.content, "Just text.");
}

// A call written inside the think block is not parsed (tool calls come from content only) and not
// lost: it stays in the reasoning text, byte for byte (vLLM issues 19017 / 42021).
TEST(ChatOutputParserTest, CallInsideTheThinkBlockStaysReasoning) {
  const std::string call =
      "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>";
  const std::string output = "<think>maybe " + call + "</think>No call.";
  for (const testing::Chunks& chunks : testing::AllSplits(output, 50)) {
    ChatOutputParser parser = Make(ReasoningStart::kModelOpens, "hermes");
    bool saw_call = false;
    const ChatOutput got = Stream(parser, chunks, &saw_call);
    EXPECT_FALSE(saw_call);
    EXPECT_EQ(got.reasoning, "maybe " + call);
    EXPECT_EQ(got.parsed.content, "No call.");
    EXPECT_TRUE(got.parsed.calls.empty());
    if (HasFailure()) return;
  }
}

// parallel_tool_calls false: the first call is kept, later ones are dropped (not content).
TEST(ChatOutputParserTest, MaxToolCallsKeepsTheFirstEverySplit) {
  const std::string output =
      "Two.<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>\n"
      "<tool_call>\n{\"name\": \"g\", \"arguments\": {}}\n</tool_call>";
  for (const testing::Chunks& chunks : testing::AllSplits(output, 50)) {
    ChatOutputParser parser = Make(std::nullopt, "hermes");
    parser.set_max_tool_calls(1);
    bool saw_call = false;
    const ChatOutput got = Stream(parser, chunks, &saw_call);
    EXPECT_TRUE(saw_call);
    ASSERT_EQ(got.parsed.calls.size(), 1u);
    EXPECT_EQ(got.parsed.calls[0].name, "f");
    EXPECT_EQ(got.parsed.calls[0].arguments, R"({"a": 1})");
    EXPECT_EQ(got.parsed.content, "Two.");  // the blank between the calls is not content
    if (HasFailure()) return;
  }
  ChatOutputParser all = Make(std::nullopt, "hermes");
  EXPECT_EQ(all.Parse(output).parsed.calls.size(), 2u);
}

}  // namespace
}  // namespace muse::chat
