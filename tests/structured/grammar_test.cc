// Grammar IR and GrammarBuilder: byte sets, UTF-8 classes checked against every code point,
// validation errors, renumbering.
#include "src/structured/grammar.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

#include "src/structured/matcher.h"

namespace muse::structured {
namespace {

TEST(ByteSetTest, RangesComplementAndCounts) {
  ByteSet s = ByteSet::Range('a', 'f');
  EXPECT_EQ(s.size(), 6);
  EXPECT_TRUE(s.Has('a'));
  EXPECT_TRUE(s.Has('f'));
  EXPECT_FALSE(s.Has('g'));
  s |= ByteSet::Single(0xFF);
  EXPECT_EQ(s.size(), 7);
  EXPECT_EQ(s.Complement().size(), 249);
  EXPECT_FALSE(s.Complement().Has(0xFF));
  EXPECT_TRUE(ByteSet::Range(5, 4).empty());
  EXPECT_EQ(ByteSet::All().size(), 256);
}

int EncodeUtf8(uint32_t cp, uint8_t* out) {
  if (cp < 0x80) {
    out[0] = static_cast<uint8_t>(cp);
    return 1;
  }
  if (cp < 0x800) {
    out[0] = static_cast<uint8_t>(0xC0 | (cp >> 6));
    out[1] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = static_cast<uint8_t>(0xE0 | (cp >> 12));
    out[1] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
    out[2] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = static_cast<uint8_t>(0xF0 | (cp >> 18));
  out[1] = static_cast<uint8_t>(0x80 | ((cp >> 12) & 0x3F));
  out[2] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
  out[3] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
  return 4;
}

// Every code point's encoding is derived by exactly one alternative iff the point is in the
// class, and the alternatives derive no other byte strings (their product sizes add up).
void ExpectClassIsExact(const std::vector<CodepointRange>& ranges, bool negate) {
  GrammarBuilder b;
  auto sym = b.Utf8Class(ranges, negate);
  ASSERT_TRUE(sym.ok()) << sym.status();
  auto g = std::move(b).Finish(sym->index);
  ASSERT_TRUE(g.ok()) << g.status();
  const Rule& rule = g->rules[g->root];
  auto in_set = [&](uint32_t cp) {
    bool in = false;
    for (const CodepointRange& r : ranges) in |= r.lo <= cp && cp <= r.hi;
    return in != negate;
  };
  uint64_t derived = 0;
  for (const Alternative& alt : rule.alternatives) {
    uint64_t product = 1;
    for (const Symbol& s : alt) {
      ASSERT_FALSE(s.is_rule());
      product *= g->byte_sets[s.index].size();
    }
    derived += product;
  }
  uint64_t members = 0;
  for (uint32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    uint8_t bytes[4];
    const int len = EncodeUtf8(cp, bytes);
    int matches = 0;
    for (const Alternative& alt : rule.alternatives) {
      if (static_cast<int>(alt.size()) != len) continue;
      bool ok = true;
      for (int i = 0; i < len && ok; ++i) ok = g->byte_sets[alt[i].index].Has(bytes[i]);
      matches += ok;
    }
    const bool member = in_set(cp);
    members += member;
    ASSERT_EQ(matches, member ? 1 : 0) << "code point " << cp;
  }
  EXPECT_EQ(derived, members);
}

TEST(Utf8ClassTest, EveryCodePointOfFixedClasses) {
  ExpectClassIsExact({{0, 0x10FFFF}}, false);           // any character (surrogates excluded)
  ExpectClassIsExact({{'\n', '\n'}}, true);             // "." in a regex
  ExpectClassIsExact({{'a', 'z'}, {'0', '9'}}, false);  // ASCII only: one byte-set alternative
  ExpectClassIsExact({{0x7F, 0x80}, {0x7FF, 0x800}, {0xFFFF, 0x10000}}, false);  // length edges
  ExpectClassIsExact({{0xD000, 0xE100}}, false);                    // straddles the surrogates
  ExpectClassIsExact({{'"', '"'}, {'\\', '\\'}, {0, 0x1F}}, true);  // a JSON string character
}

TEST(Utf8ClassTest, EveryCodePointOfRandomClasses) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 6; ++trial) {
    std::vector<CodepointRange> ranges;
    const int n = 1 + static_cast<int>(rng() % 5);
    for (int i = 0; i < n; ++i) {
      // Mix small (ASCII / 2-byte) and wide ranges, overlapping and unsorted.
      const uint32_t scale = (rng() % 3 == 0) ? 0x110000 : (rng() % 2 ? 0x900 : 0x100);
      uint32_t lo = rng() % scale;
      uint32_t hi = lo + rng() % (scale / 4 + 1);
      ranges.push_back({lo, hi});
    }
    ExpectClassIsExact(ranges, trial % 2 == 1);
  }
}

TEST(Utf8ClassTest, EmptyClassIsAnError) {
  GrammarBuilder b;
  EXPECT_FALSE(b.Utf8Class({{0xD800, 0xDFFF}}).ok());  // only surrogates
  EXPECT_FALSE(b.Utf8Class({{0, 0x10FFFF}}, true).ok());
  EXPECT_FALSE(b.Utf8Class({}).ok());
}

TEST(Utf8ClassTest, SameClassIsOneRule) {
  GrammarBuilder b;
  auto a = b.Utf8Class({{'a', 'z'}, {0x400, 0x4FF}});
  auto c = b.Utf8Class({{0x400, 0x4FF}, {'a', 'm'}, {'n', 'z'}});
  ASSERT_TRUE(a.ok() && c.ok());
  EXPECT_EQ(a->index, c->index);
}

TEST(GrammarBuilderTest, FinishRenumbersFromTheRootAndDropsUnreachable) {
  GrammarBuilder b;
  const int32_t unused = b.AddRule("unused");
  b.AddAlternative(unused, {b.Byte('u')});
  const int32_t item = b.AddRule("item");
  b.AddAlternative(item, {b.Byte('x')});
  const int32_t root = b.AddRule("root");
  b.AddAlternative(root, {Symbol::Rule(item), b.Byte(';')});
  auto g = std::move(b).Finish(root);
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_EQ(g->rules.size(), 2u);
  EXPECT_EQ(g->root, 0);
  EXPECT_EQ(g->rules[0].name, "root");
  EXPECT_EQ(g->rules[1].name, "item");
  EXPECT_EQ(g->ToString(), "root ::= item \";\"\nitem ::= \"x\"\n");
}

TEST(GrammarBuilderTest, RuleNamesAreMadeUnique) {
  GrammarBuilder b;
  const int32_t a = b.AddRule("value");
  const int32_t c = b.AddRule("value");
  EXPECT_NE(b.RuleName(a), b.RuleName(c));
  EXPECT_EQ(b.FindRule("value"), a);
  EXPECT_EQ(b.FindRule(b.RuleName(c)), c);
  EXPECT_EQ(b.FindRule("absent"), -1);
}

TEST(GrammarBuilderTest, UndefinedRuleIsNamed) {
  GrammarBuilder b;
  const int32_t missing = b.AddRule("missing");
  const int32_t root = b.AddRule("root");
  b.AddAlternative(root, {Symbol::Rule(missing)});
  auto g = std::move(b).Finish(root);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(g.status().message().find("\"missing\" is used but never defined"), std::string::npos)
      << g.status();
}

TEST(GrammarBuilderTest, RecursionWithoutBaseCaseIsNamed) {
  GrammarBuilder b;
  const int32_t loop = b.AddRule("loop");
  b.AddAlternative(loop, {b.Byte('('), Symbol::Rule(loop), b.Byte(')')});
  const int32_t root = b.AddRule("root");
  b.AddAlternative(root, {b.Byte('a')});
  b.AddAlternative(root, {Symbol::Rule(loop)});
  auto g = std::move(b).Finish(root);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("\"loop\" can never finish"), std::string::npos)
      << g.status();
}

TEST(GrammarBuilderTest, RootThatAcceptsNothingIsAnError) {
  GrammarBuilder b;
  const int32_t root = b.AddRule("root");
  b.AddAlternative(root, {b.Bytes(ByteSet())});
  auto g = std::move(b).Finish(root);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("accepts nothing"), std::string::npos) << g.status();
}

TEST(GrammarBuilderTest, RepeatWithMaxBelowMinAcceptsNothing) {
  GrammarBuilder b;
  const Symbol r = b.Repeat(b.Byte('a'), 3, 2);
  EXPECT_FALSE(std::move(b).Finish(r.index).ok());
}

TEST(GrammarBuilderTest, LiteralsAndByteSetsAreShared) {
  GrammarBuilder b;
  EXPECT_EQ(b.Literal("true").index, b.Literal("true").index);
  EXPECT_NE(b.Literal("true").index, b.Literal("false").index);
  EXPECT_EQ(b.Bytes(ByteSet::Range('0', '9')).index, b.Bytes(ByteSet::Range('0', '9')).index);
}

// Counted repeats and lists accept exactly the counts asked for (every min/max pair up to 40, and
// a few large ones), through the real matcher; their rule count stays logarithmic.
bool Accepts(const Grammar& g, const std::string& text) {
  std::vector<std::string> bytes;
  for (int b = 0; b < 256; ++b) bytes.emplace_back(1, static_cast<char>(b));
  static const auto vocab = TokenVocabulary::FromBytes(bytes, {});
  auto compiled = CompiledGrammar::Create(g, vocab);
  EXPECT_TRUE(compiled.ok()) << compiled.status();
  GrammarMatcher m(*compiled);
  return m.AcceptBytes(text) && m.CanEnd();
}

std::string Items(int n, bool list) {
  std::string out;
  for (int i = 0; i < n; ++i) out += list && i > 0 ? ",a" : "a";
  return out;
}

TEST(GrammarBuilderTest, CountedRepeatsAndListsAcceptExactlyTheirCounts) {
  std::vector<std::pair<int, int>> bounds;
  for (int lo = 0; lo <= 9; ++lo) {
    for (int hi = lo; hi <= 40; hi += (hi < 12 ? 1 : 7)) bounds.emplace_back(lo, hi);
    bounds.emplace_back(lo, -1);
  }
  bounds.emplace_back(33, 100);
  bounds.emplace_back(0, 1000);
  bounds.emplace_back(999, 1000);
  for (const bool list : {false, true}) {
    for (const auto& [lo, hi] : bounds) {
      GrammarBuilder b;
      const Symbol r =
          list ? b.SeparatedList(b.Byte('a'), b.Byte(','), lo, hi) : b.Repeat(b.Byte('a'), lo, hi);
      auto g = std::move(b).Finish(r.index);
      ASSERT_TRUE(g.ok()) << g.status();
      EXPECT_LE(g->rules.size(), 48u) << lo << ".." << hi;
      const int top = hi < 0 ? lo + 45 : hi + 3;
      for (int n = 0; n <= top; n += (top > 200 && n > 5 && n < top - 5 ? 97 : 1)) {
        const bool want = n >= lo && (hi < 0 || n <= hi);
        ASSERT_EQ(Accepts(*g, Items(n, list)), want)
            << (list ? "list " : "repeat ") << lo << ".." << hi << " of " << n;
      }
      if (list && lo <= 2 && (hi < 0 || hi >= 2)) {
        EXPECT_FALSE(Accepts(*g, ",a")) << lo << ".." << hi;
        EXPECT_FALSE(Accepts(*g, "a,")) << lo << ".." << hi;
        EXPECT_FALSE(Accepts(*g, "a,,a")) << lo << ".." << hi;
      }
    }
  }
}

}  // namespace
}  // namespace muse::structured
