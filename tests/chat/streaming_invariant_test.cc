// THE invariant of #18 (SGLang issue 35564 found 8 parsers breaking it): for every split of an
// output - whole, one character at a time, one byte at a time (inside UTF-8 too), every single
// cut, random chunkings from many seeds - the accumulated streamed deltas equal the parse of the
// whole output: content, and per call index the id, the name and the arguments.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "src/chat/forced_tool_call.h"
#include "tests/chat/chat_test_util.h"
#include "tests/chat/fixtures.h"

namespace muse::chat {
namespace {

TEST(StreamingInvariantTest, EveryFixtureEverySplit) {
  int runs = 0;
  for (const testing::Fixture& f : testing::ToolFixtures()) {
    SCOPED_TRACE(f.label);
    for (uint64_t id_seed : {0ull, 12345ull}) {
      const ParsedOutput whole = testing::ParseTools(f.parser, id_seed, f.output);
      std::vector<testing::Chunks> splits = testing::AllSplits(f.output, 200);
      if (f.output.size() <= 120) {  // every pair of cuts too
        for (size_t a = 1; a < f.output.size(); ++a) {
          for (size_t b = a + 1; b < f.output.size(); ++b) {
            splits.push_back(
                {f.output.substr(0, a), f.output.substr(a, b - a), f.output.substr(b)});
          }
        }
      }
      for (const testing::Chunks& chunks : splits) {
        const ParsedOutput streamed = testing::StreamTools(f.parser, id_seed, chunks);
        testing::ExpectSameParse(streamed, whole);
        if (::testing::Test::HasFailure()) {
          ADD_FAILURE() << "first failing split has " << chunks.size() << " chunks";
          return;
        }
        ++runs;
      }
    }
  }
  EXPECT_GT(runs, 100000);
}

// Random outputs assembled from each format's pieces (markers, JSON punctuation, keys, strings
// with escapes, UTF-8, text), so that most are near-misses: every one must parse the same
// streamed as whole, and none may crash.
std::string RandomOutput(std::mt19937_64& rng) {
  static const std::vector<std::string> kPieces = {
      "<tool_call>",
      "</tool_call>",
      "\n",
      " ",
      "{",
      "}",
      "[",
      "]",
      ":",
      ",",
      ";",
      "\"name\"",
      "\"arguments\"",
      "\"parameters\"",
      "\"type\"",
      "\"f\"",
      "\"get_weather\"",
      "\"x\\\"}\"",
      "\"\\\\\"",
      "\"\\u00e9\"",
      "1",
      "-2.5",
      "true",
      "null",
      "é",
      "🌸",
      "text",
      "<|python_tag|>",
      "<|eom_id|>",
      "[TOOL_CALLS]",
      "[ARGS]",
      "fn",
      "\\",
      "\"",
      "<",
      "{\"name\": \"f\", \"arguments\": ",
      "{\"name\": \"g\", \"parameters\": {\"a\": [1, {}]}}",
      "<tool_call>\n{\"name\": \"h\", \"arguments\": {\"s\": \"}\"}}\n</tool_call>",
      "[TOOL_CALLS]m[ARGS]{\"k\": \"v\"}",
      "{\"arguments\": {\"a\": 1}, \"name\": \"f\"}",
      "{\"arguments\": ",
      "[TOOL_CALLS] [{\"name\": \"n\", \"arguments\": {}}",
      "<think>",
      "</think>"};
  std::uniform_int_distribution<size_t> pick(0, kPieces.size() - 1);
  std::uniform_int_distribution<int> count(0, 24);
  std::string out;
  for (int i = count(rng); i > 0; --i) out += kPieces[pick(rng)];
  return out;
}

// The parsers under test by name: the model formats, and "required" (forced calls).
std::unique_ptr<ToolCallParser> MakeByName(const std::string& name, uint64_t seed) {
  if (name == "required") return MakeRequiredToolCallParser(seed, CallIdStyle::kOpenAi);
  return MakeToolCallParser(name, seed).value();
}

TEST(StreamingInvariantTest, RandomNearMissOutputs) {
  std::mt19937_64 rng(2026);
  std::vector<std::string> parsers = ToolCallParserNames();
  parsers.push_back("required");
  std::map<std::string, int> calls;
  for (int n = 0; n < 1500; ++n) {
    // Most outputs open like calls whose position is fixed (Llama's start the output, so do
    // forced ones): a whole call then more pieces, or a header whose arguments are random pieces.
    static const std::string kOpen[5] = {"", "{\"name\": \"f\", \"parameters\": {}}; ",
                                         "<|python_tag|>{\"name\": \"f\", \"parameters\": ",
                                         "[{\"name\": \"f\", \"parameters\": {}}, ",
                                         "[{\"name\": \"f\", \"parameters\": "};
    const std::string output = kOpen[n % 5] + RandomOutput(rng);
    for (const std::string& parser : parsers) {
      const ParsedOutput whole = MakeByName(parser, n)->Parse(output);
      calls[parser] += static_cast<int>(whole.calls.size());
      // Syntax is dropped only around committed calls: without one, every byte is content.
      if (whole.calls.empty()) {
        ASSERT_EQ(whole.content, output) << parser;
      }
      std::vector<testing::Chunks> splits = {testing::ByByte(output), testing::ByCharacter(output)};
      for (int seed = 0; seed < 12; ++seed) {
        splits.push_back(testing::Random(output, seed * 7919 + n, seed % 2 ? 9 : 2));
      }
      for (const testing::Chunks& chunks : splits) {
        testing::ExpectSameParse(testing::StreamTools(*MakeByName(parser, n), chunks), whole);
        if (::testing::Test::HasFailure()) {
          ADD_FAILURE() << parser << " on output #" << n << ": " << output;
          return;
        }
      }
    }
  }
  for (const std::string& parser : parsers) {
    EXPECT_GT(calls[parser], 100) << parser << ": the generator must produce calls, not only text";
  }
}

// Reasoning first, then the tool parser on its content: the pipeline the server runs.
struct Pipeline {
  ReasoningDelta reasoning;
  ParsedOutput tools;
};

Pipeline StreamPipeline(const ReasoningOptions& options, const std::string& parser_name,
                        const testing::Chunks& chunks) {
  ReasoningParser reasoning = ReasoningParser::Create(options).value();
  auto tools = MakeToolCallParser(parser_name, 5).value();
  Pipeline out;
  auto take = [&](const ReasoningDelta& d) {
    out.reasoning.reasoning += d.reasoning;
    out.reasoning.content += d.content;
    if (!d.content.empty()) Accumulate(tools->Feed(d.content), &out.tools);
  };
  for (const std::string& chunk : chunks) take(reasoning.Feed(chunk));
  take(reasoning.Finish());
  Accumulate(tools->Finish(), &out.tools);
  return out;
}

TEST(StreamingInvariantTest, ThinkBlockThenToolCalls) {
  struct Case {
    ReasoningStart start;
    std::string parser, output, reasoning, content;
    size_t calls;
  };
  const std::vector<Case> cases = {
      {ReasoningStart::kModelOpens, "hermes",
       "<think>\nThe user wants weather; call the tool.\n</think>\n\n<tool_call>\n{\"name\": "
       "\"get_weather\", \"arguments\": {\"city\": \"Zürich\"}}\n</tool_call>",
       "\nThe user wants weather; call the tool.\n", "\n\n", 1},
      // A call written inside the block is reasoning, not a call: kept, visible, not lost.
      {ReasoningStart::kModelOpens, "hermes",
       "<think>maybe <tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>? no</think>OK.",
       "maybe <tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>? no", "OK.", 0},
      {ReasoningStart::kInsideBlock, "mistral",
       "two calls needed</think>[TOOL_CALLS]a[ARGS]{\"q\": \"</think>\"}[TOOL_CALLS]b[ARGS]{}",
       "two calls needed", "", 2},
      {ReasoningStart::kInsideBlock, "llama3_json",
       "plan</think>{\"name\": \"a\", \"parameters\": {\"x\": \"🌸\"}}; {\"name\": \"b\", "
       "\"parameters\": {}}",
       "plan", "", 2},
      {ReasoningStart::kDisabled, "hermes",
       "<think></think><tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>", "",
       "<think></think>", 1},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.output);
    ReasoningOptions options;
    options.start = c.start;
    const ReasoningDelta r = ReasoningParser::Create(options).value().Parse(c.output);
    EXPECT_EQ(r.reasoning, c.reasoning);
    const ParsedOutput whole = testing::ParseTools(c.parser, 5, r.content);
    EXPECT_EQ(whole.content, c.content);
    EXPECT_EQ(whole.calls.size(), c.calls);
    for (const testing::Chunks& chunks : testing::AllSplits(c.output, 100)) {
      const Pipeline got = StreamPipeline(options, c.parser, chunks);
      EXPECT_EQ(got.reasoning.reasoning, r.reasoning);
      EXPECT_EQ(got.reasoning.content, r.content);
      testing::ExpectSameParse(got.tools, whole);
      if (::testing::Test::HasFailure()) return;
    }
  }
}

}  // namespace
}  // namespace muse::chat
