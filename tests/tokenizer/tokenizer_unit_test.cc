// Unit tests: UTF-8 handling, NFC, load-time errors, batch encoding, CLI-free API behaviour.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "src/tokenizer/regex.h"
#include "src/tokenizer/tokenizer.h"
#include "src/tokenizer/unicode_nfc.h"
#include "src/tokenizer/utf8.h"
#include "tests/tokenizer/test_tokenizers.h"

namespace muse::tokenizer {
namespace {

TEST(Utf8Test, InvalidInputNamesTheByteOffset) {
  auto tok = Tokenizer::FromJson(testing_json::ByteLevelTiny().dump());
  ASSERT_TRUE(tok.ok()) << tok.status();
  const std::vector<std::pair<std::string, size_t>> cases = {
      {std::string("ab\xff", 3), 2},          // never valid
      {std::string("abc\xc3", 4), 3},         // truncated at the end
      {std::string("a\xc0\xaf", 3), 1},       // overlong
      {std::string("xy\xed\xa0\x80", 5), 2},  // surrogate
      {std::string("\xf4\x90\x80\x80", 4), 0},  // above U+10FFFF
      {std::string("ok\xe2\x82", 4), 2},
      {std::string("\x80", 1), 0},            // stray continuation
  };
  for (const auto& [text, offset] : cases) {
    auto r = (*tok)->Encode(text);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("byte offset " + std::to_string(offset)), std::string::npos)
        << r.status();
  }
  EXPECT_TRUE((*tok)->Encode("h\xc3\xa9llo \xf0\x9f\x98\x80").ok());
}

TEST(Utf8Test, LossyMatchesRustReplacementRules) {
  EXPECT_EQ(Utf8Lossy("a\xff" "b"), "a\xEF\xBF\xBD" "b");
  // One U+FFFD per maximal subpart: E2 82 is one subpart, the lone 41 is fine.
  EXPECT_EQ(Utf8Lossy("\xe2\x82\x41"), "\xEF\xBF\xBD" "A");
  EXPECT_EQ(Utf8Lossy("\xf0\x9f\x98"), "\xEF\xBF\xBD");
  EXPECT_EQ(Utf8Lossy("\xed\xa0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(Utf8Test, CompletePrefixHoldsBackUnfinishedCharacter) {
  EXPECT_EQ(CompleteUtf8Prefix("ab\xe6\x97"), 2u);
  EXPECT_EQ(CompleteUtf8Prefix("ab\xe6\x97\xa5"), 5u);
  EXPECT_EQ(CompleteUtf8Prefix("\xf0\x9f"), 0u);
  EXPECT_EQ(CompleteUtf8Prefix("a\xff"), 2u);  // invalid is not "unfinished"
}

TEST(NfcTest, ComposesReordersAndHandlesHangul) {
  EXPECT_EQ(ToNfc("e\xcc\x81"), "\xc3\xa9");                       // e + acute -> é
  EXPECT_EQ(ToNfc("\xe2\x84\xab"), "\xc3\x85");                    // Angstrom sign -> Å
  EXPECT_EQ(ToNfc("q\xcc\xa3\xcc\x87"), "q\xcc\xa3\xcc\x87");      // already ordered
  EXPECT_EQ(ToNfc("q\xcc\x87\xcc\xa3"), "q\xcc\xa3\xcc\x87");      // reordered by ccc
  EXPECT_EQ(ToNfc("\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8"), "\xea\xb0\x81");  // jamo -> 각
  EXPECT_EQ(ToNfc("a\xcc\x81\xcc\xa3"), "\xe1\xba\xa1\xcc\x81");   // a + acute + dot below -> ạ + acute
  EXPECT_TRUE(IsTriviallyNfc("plain ascii and \xc3\xa9"));
  EXPECT_FALSE(IsTriviallyNfc("e\xcc\x81"));
}

TEST(RegexTest, WhitespaceIncludesNelLikeOniguruma) {
  EXPECT_EQ(TranslateOnigPattern(R"(\s+(?!\S)|[^\s\p{L}])"), R"([\s\x{85}]+(?![^\s\x{85}])|[^\s\x{85}\p{L}])");
  auto re = Regex::Compile(R"(\s+)");
  ASSERT_TRUE(re.ok());
  std::vector<std::pair<size_t, size_t>> m;
  ASSERT_TRUE((*re)->FindAll("a\xc2\x85 b", m).ok());
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0], (std::pair<size_t, size_t>{1, 4}));
}

TEST(LoadTest, UnknownConstructsFailAtLoad) {
  auto load_with = [](const char* key, nlohmann::json value) {
    nlohmann::json j = testing_json::ByteLevelTiny();
    j[key] = std::move(value);
    return Tokenizer::FromJson(j.dump());
  };
  auto expect_error = [](const absl::StatusOr<std::unique_ptr<Tokenizer>>& r, const std::string& word) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(word), std::string::npos) << r.status();
  };
  expect_error(load_with("normalizer", {{"type", "Lowercase"}}), "Lowercase");
  expect_error(load_with("decoder", {{"type", "WordPiece"}}), "WordPiece");
  expect_error(load_with("pre_tokenizer", {{"type", "Whitespace"}}), "Whitespace");
  expect_error(load_with("post_processor", {{"type", "BertProcessing"}}), "BertProcessing");
  expect_error(load_with("truncation", {{"max_length", 8}}), "truncation");
  nlohmann::json j = testing_json::ByteLevelTiny();
  j["model"]["type"] = "Unigram";
  expect_error(Tokenizer::FromJson(j.dump()), "Unigram");
  j = testing_json::ByteLevelTiny();
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "a"}}}, {"behavior", "Sideways"}, {"invert", false}};
  expect_error(Tokenizer::FromJson(j.dump()), "Sideways");
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}, {"invert", false}};
  expect_error(Tokenizer::FromJson(j.dump()), "regex");
  j = testing_json::ByteLevelTiny();
  j["model"]["merges"].push_back("q zz");
  expect_error(Tokenizer::FromJson(j.dump()), "merge");
  EXPECT_FALSE(Tokenizer::FromJson("{not json").ok());
  EXPECT_EQ(Tokenizer::FromFile("/nonexistent/tokenizer.json").status().code(), absl::StatusCode::kNotFound);
}

TEST(EncodeTest, ByteLevelMergesByRankAndAddedTokens) {
  auto tok = Tokenizer::FromJson(testing_json::ByteLevelTiny().dump());
  ASSERT_TRUE(tok.ok()) << tok.status();
  // "hello" -> h e l l o; merges: "l l"(0) "h e"(1) "he ll"(2) "hell o"(3).
  auto ids = (*tok)->Encode("hello", false);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{*(*tok)->TokenToId("hello")}));
  ids = (*tok)->Encode("<|bos|>hello", true);
  ASSERT_TRUE(ids.ok());
  const int32_t bos = *(*tok)->TokenToId("<|bos|>");
  EXPECT_EQ(*ids, (std::vector<int32_t>{bos, bos, *(*tok)->TokenToId("hello")}));
  auto text = (*tok)->Decode(*ids, true);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "hello");
  EXPECT_EQ(*(*tok)->Decode(*ids, false), "<|bos|><|bos|>hello");
  EXPECT_FALSE((*tok)->Decode(std::vector<int32_t>{999999}).ok());
}

TEST(EncodeTest, BatchEqualsSingle) {
  auto tok = Tokenizer::FromJson(testing_json::ByteLevelTiny().dump());
  ASSERT_TRUE(tok.ok());
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) texts.push_back(std::string(i % 7, 'l') + "hello h\xc3\xa9" + std::to_string(i));
  auto batch = (*tok)->EncodeBatch(texts, true, 3);
  ASSERT_TRUE(batch.ok());
  for (size_t i = 0; i < texts.size(); ++i) EXPECT_EQ((*batch)[i], *(*tok)->Encode(texts[i], true));
  texts[17] = "bad \xff";
  auto bad = (*tok)->EncodeBatch(texts, true, 3);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("text 17"), std::string::npos);
}

TEST(EncodeTest, ByteFallbackAndUnk) {
  auto tok = Tokenizer::FromJson(testing_json::SentencePieceTiny().dump());
  ASSERT_TRUE(tok.ok()) << tok.status();
  // 'é' is not in the vocab -> <0xC3><0xA9>; 'Z' has no byte token either way -> covered by bytes too.
  auto ids = (*tok)->Encode("ab \xc3\xa9", true);
  ASSERT_TRUE(ids.ok());
  auto id = [&](const char* t) { return *(*tok)->TokenToId(t); };
  EXPECT_EQ(*ids, (std::vector<int32_t>{id("<s>"), id("\xe2\x96\x81" "ab"), id("\xe2\x96\x81"), id("<0xC3>"), id("<0xA9>")}));
  EXPECT_EQ(*(*tok)->Decode(*ids, true), "ab \xc3\xa9");
  // A lone continuation byte token decodes to U+FFFD.
  EXPECT_EQ(*(*tok)->Decode(std::vector<int32_t>{id("<0xA9>")}, true), "\xEF\xBF\xBD");
}

}  // namespace
}  // namespace muse::tokenizer
