#include "src/chat/reasoning_parser.h"

#include <gtest/gtest.h>

#include "tests/chat/chat_test_util.h"

namespace muse::chat {
namespace {

ReasoningOptions Opts(ReasoningStart start) {
  ReasoningOptions o;
  o.start = start;
  return o;
}

struct Case {
  ReasoningOptions options;
  std::string output, reasoning, content;
};

std::vector<Case> Cases() {
  ReasoningOptions kimi;  // non-ASCII tags: splits fall inside their UTF-8 bytes
  kimi.start_tag = "◁think▷";
  kimi.end_tag = "◁/think▷";
  return {
      // Qwen3: the model writes the block; newlines kept verbatim.
      {Opts(ReasoningStart::kModelOpens), "<think>\nI should add 2 and 2.\n</think>\n\nIt is 4.",
       "\nI should add 2 and 2.\n", "\n\nIt is 4."},
      // DeepSeek-R1 templates that put `<think>\n` into the prompt.
      {Opts(ReasoningStart::kInsideBlock), "Let me think. 2+2=4.</think>The answer is 4.",
       "Let me think. 2+2=4.", "The answer is 4."},
      // enable_thinking=false: an empty block is in the prompt, everything is content.
      {Opts(ReasoningStart::kDisabled), "<think>not reasoning</think>text", "",
       "<think>not reasoning</think>text"},
      {Opts(ReasoningStart::kModelOpens), "Hello <think>x</think>", "", "Hello <think>x</think>"},
      {Opts(ReasoningStart::kModelOpens), "<think></think>content", "", "content"},
      {Opts(ReasoningStart::kModelOpens), "<thin", "", "<thin"},
      {Opts(ReasoningStart::kModelOpens), "", "", ""},
      // Cut off inside the block (budget / max_tokens): all reasoning, partial tag included.
      {Opts(ReasoningStart::kModelOpens), "<think>abc </thi", "abc </thi", ""},
      {Opts(ReasoningStart::kInsideBlock), "a < b, </thinker> </think>", "a < b, </thinker> ", ""},
      // Text after the end tag is content, even a second block.
      {Opts(ReasoningStart::kModelOpens), "<think>a</think>b<think>c</think>", "a",
       "b<think>c</think>"},
      // A tool call inside the block stays in the reasoning: visible, not lost.
      {Opts(ReasoningStart::kModelOpens),
       "<think>maybe <tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call></think>No.",
       "maybe <tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>", "No."},
      {kimi, "◁think▷思考 🌸◁/think▷答え", "思考 🌸", "答え"},
      {kimi, "◁think▷思考◁/thin", "思考◁/thin", ""},
  };
}

TEST(ReasoningParserTest, ParseSplitsReasoningAndContent) {
  for (const Case& c : Cases()) {
    ReasoningParser parser = ReasoningParser::Create(c.options).value();
    const ReasoningDelta got = parser.Parse(c.output);
    EXPECT_EQ(got.reasoning, c.reasoning) << c.output;
    EXPECT_EQ(got.content, c.content) << c.output;
  }
}

// THE invariant: every split streams to the same split as the whole output.
TEST(ReasoningParserTest, EverySplitStreamsToTheParse) {
  int runs = 0;
  for (const Case& c : Cases()) {
    for (const testing::Chunks& chunks : testing::AllSplits(c.output, 200)) {
      const ReasoningDelta got = testing::StreamReasoning(c.options, chunks);
      ASSERT_EQ(got.reasoning, c.reasoning) << c.output << " in " << chunks.size() << " chunks";
      ASSERT_EQ(got.content, c.content) << c.output << " in " << chunks.size() << " chunks";
      ++runs;
    }
  }
  EXPECT_GT(runs, 3000);
}

TEST(ReasoningParserTest, HoldsBackOnlyAPossiblePartialTag) {
  ReasoningParser parser = ReasoningParser::Create(Opts(ReasoningStart::kInsideBlock)).value();
  ReasoningDelta d = parser.Feed("step one </th");
  EXPECT_EQ(d.reasoning, "step one ");  // `</th` might be the end tag
  d = parser.Feed("at");
  EXPECT_EQ(d.reasoning, "</that");  // it was not
  d = parser.Feed("<");
  EXPECT_EQ(d.reasoning, "");
  d = parser.Feed("/think>An");
  EXPECT_EQ(d.reasoning, "");
  EXPECT_EQ(d.content, "An");
  EXPECT_TRUE(parser.in_content());
  d = parser.Feed("</think");  // content is never held
  EXPECT_EQ(d.content, "</think");
  d = parser.Finish();
  EXPECT_EQ(d.reasoning + d.content, "");
}

TEST(ReasoningParserTest, StartTagDecidedByTheFirstBytes) {
  ReasoningParser parser = ReasoningParser::Create(Opts(ReasoningStart::kModelOpens)).value();
  EXPECT_EQ(parser.Feed("<thi").content, "");
  const ReasoningDelta d = parser.Feed("s is");
  EXPECT_EQ(d.content, "<this is");
  EXPECT_EQ(d.reasoning, "");
}

TEST(ReasoningParserTest, FinishFlushesAHeldPartialTag) {
  ReasoningParser parser = ReasoningParser::Create(Opts(ReasoningStart::kModelOpens)).value();
  EXPECT_EQ(parser.Feed("<think>r</").reasoning, "r");
  EXPECT_EQ(parser.Finish().reasoning, "</");
}

TEST(ReasoningParserTest, BadOptionsNameTheField) {
  ReasoningOptions o;
  o.start_tag = "";
  EXPECT_EQ(ReasoningParser::Create(o).status().message(),
            "reasoning start_tag: must not be empty");
  o = ReasoningOptions();
  o.end_tag = "";
  EXPECT_EQ(ReasoningParser::Create(o).status().message(), "reasoning end_tag: must not be empty");
  o = ReasoningOptions();
  o.end_tag = o.start_tag;
  EXPECT_EQ(ReasoningParser::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace muse::chat
