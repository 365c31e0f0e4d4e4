// Unit tests: UTF-8 handling, NFC, load-time errors, batch encoding, CLI-free API behaviour.
#include <gtest/gtest.h>

#include <string>
#include <vector>

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
      {std::string("ab\xff", 3), 2},                                         // never valid
      {std::string("abc\xc3", 4), 3},                                        // truncated at the end
      {std::string("a\xc0\xaf", 3), 1},                                      // overlong
      {std::string("xy\xed\xa0\x80", 5), 2},                                 // surrogate
      {std::string("\xf4\x90\x80\x80", 4), 0},                               // above U+10FFFF
      {std::string("ok\xe2\x82", 4), 2},       {std::string("\x80", 1), 0},  // stray continuation
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

// An independent statement of RFC 3629: decode by bit pattern, then refuse overlongs, surrogates
// and code points above U+10FFFF (utf8.cc works from Unicode Table 3-7's byte ranges instead).
bool ReferenceValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<uint8_t>(s[i]);
    const size_t len = c < 0x80           ? 1
                       : (c >> 5) == 0x6  ? 2
                       : (c >> 4) == 0xE  ? 3
                       : (c >> 3) == 0x1E ? 4
                                          : 0;
    if (len == 0 || i + len > s.size()) return false;
    uint32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<uint8_t>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

std::string Bytes(std::initializer_list<int> b) {
  std::string s;
  for (int v : b) s.push_back(static_cast<char>(v));
  return s;
}

TEST(Utf8Test, EveryScalarValueIsValidAndDecodesBack) {
  std::string all;
  for (uint32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    AppendUtf8(cp, all);
  }
  EXPECT_TRUE(IsValidUtf8(all));
  size_t i = 0;
  for (uint32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    const size_t at = i;
    ASSERT_EQ(Utf8SequenceLength(all, at), Utf8SeqLen(static_cast<uint8_t>(all[at])));
    ASSERT_EQ(DecodeUtf8(all, i), cp) << "at byte " << at;
  }
  EXPECT_EQ(i, all.size());
}

TEST(Utf8Test, RejectsOverlongsSurrogatesAboveMaxAndTruncation) {
  const std::vector<std::pair<std::string, const char*>> bad = {
      {Bytes({0xC0, 0x80}), "overlong U+0000"},
      {Bytes({0xC1, 0xBF}), "overlong U+007F"},
      {Bytes({0xE0, 0x80, 0x80}), "overlong U+0000 in 3 bytes"},
      {Bytes({0xE0, 0x9F, 0xBF}), "overlong U+07FF"},
      {Bytes({0xF0, 0x80, 0x80, 0x80}), "overlong U+0000 in 4 bytes"},
      {Bytes({0xF0, 0x8F, 0xBF, 0xBF}), "overlong U+FFFF"},
      {Bytes({0xED, 0xA0, 0x80}), "U+D800"},
      {Bytes({0xED, 0xAD, 0xBF}), "U+DB7F"},
      {Bytes({0xED, 0xB0, 0x80}), "U+DC00"},
      {Bytes({0xED, 0xBF, 0xBF}), "U+DFFF"},
      {Bytes({0xED, 0xA0, 0xBD, 0xED, 0xB8, 0x80}), "surrogate pair (CESU-8)"},
      {Bytes({0xF4, 0x90, 0x80, 0x80}), "U+110000"},
      {Bytes({0xF7, 0xBF, 0xBF, 0xBF}), "U+1FFFFF"},
      {Bytes({0xF8, 0x88, 0x80, 0x80, 0x80}), "5-byte form"},
      {Bytes({0xFC, 0x84, 0x80, 0x80, 0x80, 0x80}), "6-byte form"},
      {Bytes({0xFE}), "0xFE"},
      {Bytes({0xFF}), "0xFF"},
      {Bytes({0x80}), "stray continuation"},
      {Bytes({0xBF}), "stray continuation"},
      {Bytes({0xC2}), "truncated 2-byte"},
      {Bytes({0xE2, 0x82}), "truncated 3-byte"},
      {Bytes({0xF0, 0x9F, 0x98}), "truncated 4-byte"},
      {Bytes({0xE2, 0x82, 0x41}), "3-byte with ASCII third byte"},
      {Bytes({0xC3, 0xC3, 0xA9}), "lead byte where a continuation belongs"},
  };
  for (const auto& [seq, what] : bad) {
    EXPECT_FALSE(ReferenceValidUtf8(seq)) << what;  // the reference agrees these are ill-formed
    EXPECT_FALSE(IsValidUtf8(seq)) << what;
    EXPECT_EQ(FindInvalidUtf8(seq), 0u) << what;
    EXPECT_EQ(Utf8SequenceLength(seq, 0), 0u) << what;
    // The offset is exact after ASCII of every length (the 8-byte ASCII fast path included) and
    // after multi-byte characters.
    for (const std::string prefix :
         {"", "a", "abcdefg", "abcdefgh", "abcdefghijklmnopq", "Ã©", "xæ¥", "ðzz"}) {
      EXPECT_EQ(FindInvalidUtf8(prefix + seq + "tail"), prefix.size())
          << what << " after " << prefix.size();
    }
  }
  // The edges of each range are valid.
  for (uint32_t cp :
       {0x7Fu, 0x80u, 0x7FFu, 0x800u, 0xD7FFu, 0xE000u, 0xFFFDu, 0xFFFFu, 0x10000u, 0x10FFFFu}) {
    std::string s;
    AppendUtf8(cp, s);
    EXPECT_TRUE(IsValidUtf8(s)) << std::hex << cp;
    EXPECT_TRUE(IsValidUtf8("abcdefgh" + s + s)) << std::hex << cp;
    for (size_t cut = 1; cut < s.size(); ++cut) {
      EXPECT_EQ(FindInvalidUtf8("ab" + s.substr(0, cut)), 2u)
          << std::hex << cp << " cut at " << cut;
      EXPECT_EQ(FindInvalidUtf8("ab" + s.substr(0, cut) + "c"), 2u)
          << std::hex << cp << " cut at " << cut;
    }
  }
}

// Every 1-, 2- and 3-byte string, and 4-byte strings over the bytes at every range edge, against
// the reference.
TEST(Utf8Test, AgreesWithReferenceExhaustively) {
  size_t checked = 0, valid = 0;
  auto check = [&](const std::string& s) {
    const bool want = ReferenceValidUtf8(s);
    ASSERT_EQ(IsValidUtf8(s), want) << "bytes " << ::testing::PrintToString(s);
    ++checked;
    valid += want;
  };
  std::string s;
  for (int a = 0; a < 256; ++a) {
    check(Bytes({a}));
    for (int b = 0; b < 256; ++b) {
      check(Bytes({a, b}));
      if (a < 0x80) continue;  // ASCII first: the rest is the 2-byte case again
      for (int c = 0; c < 256; ++c) check(Bytes({a, b, c}));
    }
  }
  const int edges[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1,
                       0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xF8, 0xFF};
  for (int a : edges) {
    for (int b : edges) {
      for (int c : edges) {
        for (int d : edges) check(Bytes({a, b, c, d}));
      }
    }
  }
  EXPECT_GT(checked, 8'000'000u);
  EXPECT_GT(valid, 60'000u);
}

TEST(Utf8Test, LossyMatchesRustReplacementRules) {
  EXPECT_EQ(Utf8Lossy("a\xff"
                      "b"),
            "a\xEF\xBF\xBD"
            "b");
  // One U+FFFD per maximal subpart: E2 82 is one subpart, the lone 41 is fine.
  EXPECT_EQ(Utf8Lossy("\xe2\x82\x41"),
            "\xEF\xBF\xBD"
            "A");
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
  EXPECT_EQ(ToNfc("e\xcc\x81"), "\xc3\xa9");                                 // e + acute -> é
  EXPECT_EQ(ToNfc("\xe2\x84\xab"), "\xc3\x85");                              // Angstrom sign -> Å
  EXPECT_EQ(ToNfc("q\xcc\xa3\xcc\x87"), "q\xcc\xa3\xcc\x87");                // already ordered
  EXPECT_EQ(ToNfc("q\xcc\x87\xcc\xa3"), "q\xcc\xa3\xcc\x87");                // reordered by ccc
  EXPECT_EQ(ToNfc("\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8"), "\xea\xb0\x81");  // jamo -> 각
  EXPECT_EQ(ToNfc("a\xcc\x81\xcc\xa3"),
            "\xe1\xba\xa1\xcc\x81");  // a + acute + dot below -> ạ + acute
  EXPECT_TRUE(IsTriviallyNfc("plain ascii and \xc3\xa9"));
  EXPECT_FALSE(IsTriviallyNfc("e\xcc\x81"));
}

TEST(RegexTest, WhitespaceIncludesNelLikeOniguruma) {
  EXPECT_EQ(TranslateOnigPattern(R"(\s+(?!\S)|[^\s\p{L}])"),
            R"([\s\x{85}]+(?![^\s\x{85}])|[^\s\x{85}\p{L}])");
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
  auto expect_error = [](const absl::StatusOr<std::unique_ptr<Tokenizer>>& r,
                         const std::string& word) {
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
  j["pre_tokenizer"] = {{"type", "Split"},
                        {"pattern", {{"Regex", "a"}}},
                        {"behavior", "Sideways"},
                        {"invert", false}};
  expect_error(Tokenizer::FromJson(j.dump()), "Sideways");
  j["pre_tokenizer"] = {{"type", "Split"},
                        {"pattern", {{"Regex", "(unclosed"}}},
                        {"behavior", "Isolated"},
                        {"invert", false}};
  expect_error(Tokenizer::FromJson(j.dump()), "regex");
  j = testing_json::ByteLevelTiny();
  j["model"]["merges"].push_back("q zz");
  expect_error(Tokenizer::FromJson(j.dump()), "merge");
  EXPECT_FALSE(Tokenizer::FromJson("{not json").ok());
  EXPECT_EQ(Tokenizer::FromFile("/nonexistent/tokenizer.json").status().code(),
            absl::StatusCode::kNotFound);
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
  for (int i = 0; i < 200; ++i)
    texts.push_back(std::string(i % 7, 'l') + "hello h\xc3\xa9" + std::to_string(i));
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
  // 'é' is not in the vocab -> <0xC3><0xA9>; 'Z' has no byte token either way -> covered by bytes
  // too.
  auto ids = (*tok)->Encode("ab \xc3\xa9", true);
  ASSERT_TRUE(ids.ok());
  auto id = [&](const char* t) { return *(*tok)->TokenToId(t); };
  EXPECT_EQ(*ids, (std::vector<int32_t>{id("<s>"),
                                        id("\xe2\x96\x81"
                                           "ab"),
                                        id("\xe2\x96\x81"), id("<0xC3>"), id("<0xA9>")}));
  EXPECT_EQ(*(*tok)->Decode(*ids, true), "ab \xc3\xa9");
  // A lone continuation byte token decodes to U+FFFD.
  EXPECT_EQ(*(*tok)->Decode(std::vector<int32_t>{id("<0xA9>")}, true), "\xEF\xBF\xBD");
}

}  // namespace
}  // namespace muse::tokenizer
