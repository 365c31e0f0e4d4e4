// Regex front end (CompileRegex): hand-written and randomly generated regexes compared with PCRE2
// (anchored whole match, UTF mode) on generated strings through the real GrammarMatcher, UTF-8
// input, grammar structure, and errors word for word (they name the construct and its offset).
#include <gtest/gtest.h>

#include <functional>
#include <iostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/match.h"
#include "src/structured/compile.h"
#include "tests/structured/frontend_test_util.h"

namespace muse::structured {
namespace {

using frontend_test::Acceptor;
using frontend_test::AppendCp;
using frontend_test::CharPool;
using frontend_test::Escaped;
using frontend_test::ExpectSameAsPcre;
using frontend_test::MustCompileRegex;
using frontend_test::Pcre;
using frontend_test::TestStrings;

// ---- regex: hand-written cases against PCRE2 ----

struct RegexCase {
  const char* re;
  std::vector<std::string> matching;  // must match (checked with PCRE2 and the grammar)
};

TEST(RegexTest, HandWrittenRegexesAgreeWithPcre2) {
  const std::vector<RegexCase> cases = {
      {R"(\d{3}-\d{4})", {"555-1234"}},
      {R"([A-Za-z_][A-Za-z0-9_]*)", {"_x9", "a"}},
      {R"((?:ab|cd)*e?)", {"", "abcde", "cdcd"}},
      {R"(a{2,4}b{0,}c{1})", {"aac", "aaaabbc"}},
      {R"(^\w+@\w+\.com$)", {"me@example.com"}},
      {R"([^abc]+)", {"xyz", "é\n"}},
      {R"(\x41\u00e9\u{1F600}\x{20AC})", {"Aé😀€"}},
      {R"(.*)", {"", "anything é 😀"}},
      {R"(.+\n.)", {"ab\nc"}},
      {R"([\d\s]+)", {"1 2\t3\n"}},
      {R"(\D\W\S)", {"a-b", "é€😀"}},
      {R"([\D][\W][\S])", {"a-b"}},
      {R"([^\d\s])", {"x", "中"}},
      {R"(colou?r)", {"color", "colour"}},
      {R"((a|b|)+c)", {"c", "abbac"}},
      {R"([-a-c]+)", {"-abc"}},
      {R"([a\-z]+)", {"a-z"}},
      {R"([a-]+)", {"a-"}},
      {R"([]a]+)", {"]a]"}},
      {R"([^]a]+)", {"xyz"}},
      {R"(a{,3})", {"a{,3}"}},
      {R"(x{2}{)", {"xx{"}},
      {R"(x{2,)", {"x{2,"}},
      {R"(}])", {"}]"}},
      {R"(\.\*\+\?\(\)\[\]\{\}\|\\\/\^\$)", {".*+?()[]{}|\\/^$"}},
      {R"(é+ü*ß?)", {"ééü", "é"}},
      {R"([à-ÿ]+)", {"àéÿ"}},
      {R"([^\x00-\x7F]+)", {"é€😀"}},
      {R"([\x{1F600}-\x{1F64F}]{1,2})", {"😀", "😀🙏"}},
      {R"([\u0400-\u04FF\d]+)", {"Жж9"}},
      {R"((?<year>\d{4})-(?P<m>\d\d)-(?'d'\d\d))", {"2024-01-31"}},
      {R"(a*?b+?c??d{1,2}?)", {"bd", "aabcdd"}},
      {R"([\w-]+)", {"a-b_c"}},
      {R"(\t\n\r\f\e\a\0)", {std::string("\t\n\r\f\x1b\x07\0", 7)}},
      {R"(\$\^)", {"$^"}},
      {R"(a|b|c)", {"a", "c"}},
      {R"(()|a)", {"", "a"}},
      {R"(^$)", {""}},
      {R"(^)", {""}},
      {R"($)", {""}},
      {R"(a\\$)", {"a\\"}},
      {R"(^ab$|^c$|d|$)", {"ab", "c", "d", ""}},
      {R"(^^a|b$)", {"a", "b"}},
      {R"((?:(?:a|b){2}){2})", {"abba"}},
      {R"(((a)|(b(c)?))*)", {"abcb"}},
      {R"([.][*][$][(][|])", {".*$(|"}},
      {R"([\b]x)", {"\bx"}},
      {R"(\s\S)", {" x", "\v\x7f"}},
      {R"([^\n]*\n?)", {"abc\n"}},
      {R"([A-Z][a-z]+(?: [A-Z][a-z]+)*)", {"New York City"}},
      {R"(-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)", {"-0.5e+10", "42"}},
      {R"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
       {"123e4567-e89b-12d3-a456-426614174000"}},
      {R"((?:[01]\d|2[0-3]):[0-5]\d)", {"23:59", "00:00"}},
      {R"(😀{3})", {"😀😀😀"}},
      {R"(€|中+|😀?)", {"€", "中中", ""}},
  };
  std::mt19937 rng(17);
  for (const RegexCase& c : cases) {
    SCOPED_TRACE(c.re);
    // Alphabet: the pattern's own characters plus the common pool.
    std::vector<std::string> alphabet = CharPool();
    const std::string_view re = c.re;
    for (size_t i = 0; i < re.size();) {
      size_t len = 1;
      const auto b = static_cast<unsigned char>(re[i]);
      if (b >= 0xF0) {
        len = 4;
      } else if (b >= 0xE0) {
        len = 3;
      } else if (b >= 0xC0) {
        len = 2;
      }
      alphabet.emplace_back(re.substr(i, len));
      i += len;
    }
    std::vector<std::string> strings = TestStrings(c.matching, alphabet, 300, &rng);
    {
      Pcre pcre(c.re);
      ASSERT_TRUE(pcre.ok()) << pcre.error();
      auto g = CompileRegex(c.re);
      ASSERT_TRUE(g.ok()) << g.status();
      Acceptor ours(*g);
      for (const std::string& m : c.matching) {
        EXPECT_TRUE(pcre.Matches(m)) << Escaped(m);
        EXPECT_TRUE(ours.Accepts(m)) << Escaped(m);
      }
    }
    ExpectSameAsPcre(c.re, strings);
  }
}

// ---- regex: random regexes against PCRE2 ----

// A random regex together with a sampler of strings it matches (so the comparison sees matches,
// not only rejections).
struct GenRegex {
  std::string text;
  bool atomic = true;  // can take a quantifier without a group
  std::function<void(std::mt19937*, std::string*)> sample;
};

class RegexGenerator {
 public:
  explicit RegexGenerator(std::mt19937* rng) : rng_(rng) {}

  GenRegex Gen(int depth) {
    const int kind = depth <= 0 ? Uniform(0, 3) : Uniform(0, 8);
    switch (kind) {
      case 0:
      case 1:
        return Char();
      case 2:
        return Class();
      case 3:
        return Shorthand();
      case 4:
      case 5:
        return Concat(depth);
      case 6:
        return Alternation(depth);
      case 7:
        return Quantified(depth);
      default:
        return Group(depth);
    }
  }

 private:
  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(*rng_); }

  struct Cp {
    uint32_t cp;
    const char* text;        // how the regex writes it outside a class
    const char* class_text;  // inside a class
  };
  const std::vector<Cp>& Chars() {
    static const std::vector<Cp> chars = {
        {'a', "a", "a"},
        {'b', "b", "b"},
        {'z', "z", "z"},
        {'0', "0", "0"},
        {'7', "7", "7"},
        {'_', "_", "_"},
        {' ', " ", " "},
        {'-', "-", "\\-"},
        {'.', "\\.", "."},
        {'*', "\\*", "*"},
        {'(', "\\(", "("},
        {']', "\\]", "\\]"},
        {'^', "\\^", "\\^"},
        {'\\', "\\\\", "\\\\"},
        {'\n', "\\n", "\\n"},
        {'\t', "\\t", "\\t"},
        {0xE9, "é", "é"},
        {0xE9, "\\u00e9", "\\x{e9}"},
        {0x20AC, "€", "€"},
        {0x20AC, "\\u20AC", "\\u{20ac}"},
        {0x4E2D, "中", "中"},
        {0x1F600, "😀", "😀"},
        {0x1F600, "\\x{1F600}", "\\u{1F600}"},
        {'A', "\\x41", "\\x41"},
    };
    return chars;
  }

  GenRegex Char() {
    const Cp& c = Chars()[Uniform(0, static_cast<int>(Chars().size()) - 1)];
    const uint32_t cp = c.cp;
    return {c.text, true, [cp](std::mt19937*, std::string* out) { AppendCp(cp, out); }};
  }

  // Code points the samplers draw from, so a negated class can be sampled.
  static const std::vector<uint32_t>& Universe() {
    static const std::vector<uint32_t> u = {
        'a', 'b', 'c', 'z', 'A', '0',  '5',  '9',  '_',   ' ',    '\t',   '\n',   '-',
        '.', '*', '(', ']', '^', '\\', 0xE9, 0xFF, 0x100, 0x20AC, 0x4E2D, 0xFFFD, 0x1F600};
    return u;
  }

  static std::function<void(std::mt19937*, std::string*)> SampleWhere(
      std::function<bool(uint32_t)> pred) {
    std::vector<uint32_t> members;
    for (uint32_t cp : Universe()) {
      if (pred(cp)) members.push_back(cp);
    }
    return [members](std::mt19937* rng, std::string* out) {
      if (members.empty()) return;  // cannot happen for the classes generated here
      AppendCp(members[std::uniform_int_distribution<size_t>(0, members.size() - 1)(*rng)], out);
    };
  }

  GenRegex Class() {
    std::string text = "[";
    const bool negate = Uniform(0, 3) == 0;
    if (negate) text += "^";
    std::vector<std::pair<uint32_t, uint32_t>> ranges;
    std::vector<std::function<bool(uint32_t)>> shorthands;
    const int items = Uniform(1, 3);
    for (int i = 0; i < items; ++i) {
      const int k = Uniform(0, 5);
      if (k == 0) {
        static const char* kRanges[][3] = {{"a-c", "a", "c"},
                                           {"0-5", "0", "5"},
                                           {"A-Z", "A", "Z"},
                                           {"à-ÿ", "à", "ÿ"},
                                           {"\\x{100}-\\x{20AC}", "", ""}};
        const int r = Uniform(0, 4);
        text += kRanges[r][0];
        if (r == 0) ranges.emplace_back('a', 'c');
        if (r == 1) ranges.emplace_back('0', '5');
        if (r == 2) ranges.emplace_back('A', 'Z');
        if (r == 3) ranges.emplace_back(0xE0, 0xFF);
        if (r == 4) ranges.emplace_back(0x100, 0x20AC);
      } else if (k == 1) {
        static const char* kShort[] = {"\\d", "\\w", "\\s", "\\D", "\\W", "\\S"};
        const int s = Uniform(0, 5);
        text += kShort[s];
        shorthands.push_back(ShorthandPred(s));
      } else {
        const Cp& c = Chars()[Uniform(0, static_cast<int>(Chars().size()) - 1)];
        text += c.class_text;
        ranges.emplace_back(c.cp, c.cp);
      }
    }
    text += "]";
    auto in = [ranges, shorthands](uint32_t cp) {
      for (const auto& [lo, hi] : ranges) {
        if (lo <= cp && cp <= hi) return true;
      }
      for (const auto& f : shorthands) {
        if (f(cp)) return true;
      }
      return false;
    };
    auto pred = [in, negate](uint32_t cp) { return in(cp) != negate; };
    bool any = false;
    for (uint32_t cp : Universe()) any |= pred(cp);
    if (!any) return Char();
    return {text, true, SampleWhere(pred)};
  }

  static std::function<bool(uint32_t)> ShorthandPred(int s) {
    auto digit = [](uint32_t c) { return c >= '0' && c <= '9'; };
    auto word = [](uint32_t c) {
      return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    };
    auto space = [](uint32_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
    switch (s) {
      case 0:
        return digit;
      case 1:
        return word;
      case 2:
        return space;
      case 3:
        return [digit](uint32_t c) { return !digit(c); };
      case 4:
        return [word](uint32_t c) { return !word(c); };
      default:
        return [space](uint32_t c) { return !space(c); };
    }
  }

  GenRegex Shorthand() {
    static const char* kShort[] = {"\\d", "\\w", "\\s", "\\D", "\\W", "\\S", "."};
    const int s = Uniform(0, 6);
    if (s == 6) return {".", true, SampleWhere([](uint32_t c) { return c != '\n'; })};
    return {kShort[s], true, SampleWhere(ShorthandPred(s))};
  }

  GenRegex Concat(int depth) {
    const int n = Uniform(2, 3);
    std::vector<GenRegex> parts;
    std::string text;
    for (int i = 0; i < n; ++i) {
      parts.push_back(Gen(depth - 1));
      text += parts.back().text;
    }
    return {text, false, [parts](std::mt19937* rng, std::string* out) {
              for (const GenRegex& p : parts) p.sample(rng, out);
            }};
  }

  GenRegex Alternation(int depth) {
    const int n = Uniform(2, 3);
    std::vector<GenRegex> parts;
    std::string text = "(?:";
    for (int i = 0; i < n; ++i) {
      // An empty branch now and then.
      if (Uniform(0, 6) == 0) {
        parts.push_back({"", true, [](std::mt19937*, std::string*) {}});
      } else {
        parts.push_back(Gen(depth - 1));
      }
      text += (i ? "|" : "") + parts.back().text;
    }
    text += ")";
    return {text, true, [parts](std::mt19937* rng, std::string* out) {
              parts[std::uniform_int_distribution<size_t>(0, parts.size() - 1)(*rng)].sample(rng,
                                                                                             out);
            }};
  }

  GenRegex Group(int depth) {
    GenRegex inner = Gen(depth - 1);
    static const char* kOpen[] = {"(", "(?:"};
    const int k = Uniform(0, 1);
    inner.text = std::string(kOpen[k]) + inner.text + ")";
    inner.atomic = true;
    return inner;
  }

  GenRegex Quantified(int depth) {
    GenRegex inner = Gen(depth - 1);
    if (!inner.atomic) inner.text = "(?:" + inner.text + ")";
    int min = 0;
    int max = 0;  // -1: unbounded
    std::string q;
    switch (Uniform(0, 5)) {
      case 0:
        q = "*", min = 0, max = -1;
        break;
      case 1:
        q = "+", min = 1, max = -1;
        break;
      case 2:
        q = "?", min = 0, max = 1;
        break;
      case 3:
        min = Uniform(0, 3), max = min, q = "{" + std::to_string(min) + "}";
        break;
      case 4:
        min = Uniform(0, 2), max = -1, q = "{" + std::to_string(min) + ",}";
        break;
      default:
        min = Uniform(0, 2), max = min + Uniform(0, 2);
        q = "{" + std::to_string(min) + "," + std::to_string(max) + "}";
        break;
    }
    if (Uniform(0, 4) == 0) q += "?";  // lazy
    GenRegex out;
    out.text = inner.text + q;
    out.atomic = false;
    out.sample = [inner, min, max](std::mt19937* rng, std::string* s) {
      const int hi = max < 0 ? min + 3 : max;
      const int n = std::uniform_int_distribution<int>(min, hi)(*rng);
      for (int i = 0; i < n; ++i) inner.sample(rng, s);
    };
    // A quantified item followed by another quantifier needs a group; keep it non-atomic.
    return out;
  }

  std::mt19937* rng_;
};

TEST(RegexTest, RandomRegexesAgreeWithPcre2) {
  std::mt19937 rng(1234);
  RegexGenerator gen(&rng);
  int regexes = 0;
  int strings = 0;
  int matched = 0;
  for (int i = 0; i < 1000; ++i) {
    GenRegex r = gen.Gen(std::uniform_int_distribution<int>(1, 4)(rng));
    std::vector<std::string> seeds;
    for (int k = 0; k < 12; ++k) {
      std::string s;
      r.sample(&rng, &s);
      seeds.push_back(std::move(s));
    }
    std::vector<std::string> all = TestStrings(seeds, CharPool(), 20, &rng);
    matched += ExpectSameAsPcre(r.text, all);
    strings += static_cast<int>(all.size());
    ++regexes;
    if (HasFailure()) {
      ADD_FAILURE() << "stopping after regex " << i << ": " << Escaped(r.text);
      break;
    }
  }
  // Samples are drawn from the regex itself, so a good share must match.
  EXPECT_GT(matched, strings / 5);
  std::cerr << "random regexes: " << regexes << ", strings: " << strings
            << ", PCRE2 matches: " << matched << "\n";
}

// JSON Schema's `pattern` is ECMA-262: \s takes Unicode spaces and line terminators, "." stops
// at every line terminator. PCRE2 (no UCP) does neither.
TEST(RegexTest, EcmaScriptDialectSpacesAndDot) {
  auto ecma = CompileRegex("\\s\\S.", RegexDialect::kEcmaScript);
  ASSERT_TRUE(ecma.ok()) << ecma.status();
  Acceptor e(*ecma), p(MustCompileRegex("\\s\\S."));
  for (const char* space : {"\u00a0", "\u2003", "\u2028", "\ufeff", "\u3000", " ", "\t"}) {
    EXPECT_TRUE(e.Accepts(std::string(space) + "ab")) << space;
    EXPECT_FALSE(e.Accepts(std::string("a") + space + "b")) << space;  // not \S
  }
  EXPECT_FALSE(p.Accepts("\u00a0ab"));
  EXPECT_TRUE(p.Accepts(" a\r"));
  EXPECT_FALSE(e.Accepts(" a\r"));
  EXPECT_FALSE(e.Accepts(" a\u2029"));
  EXPECT_TRUE(e.Accepts(" a\u0085"));  // NEL is neither space nor line terminator in ECMA-262
}

TEST(RegexTest, InvalidUtf8InputIsRejected) {
  Acceptor any(MustCompileRegex("(?:.|\\n)*"));
  EXPECT_TRUE(any.Accepts("é€😀\n"));
  EXPECT_FALSE(any.Accepts("\xC3"));              // truncated
  EXPECT_FALSE(any.Accepts("\xC0\xAF"));          // overlong "/"
  EXPECT_FALSE(any.Accepts("\xED\xA0\x80"));      // surrogate D800
  EXPECT_FALSE(any.Accepts("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(any.Accepts("\xFF"));
}

TEST(RegexTest, StructureOfSmallRegexes) {
  // A literal is one alternative of bytes; an ASCII class is one byte set.
  EXPECT_EQ(MustCompileRegex("ab").ToString(), "root ::= \"ab\"\n");
  EXPECT_EQ(MustCompileRegex("^[0-9a-f]$").ToString(), "root ::= [0-9a-f]\n");
  EXPECT_EQ(MustCompileRegex("a|bc|").ToString(), "root ::= \"a\" | \"bc\" | \"\"\n");
  // Exact counts are inlined; lazy quantifiers compile like greedy ones.
  EXPECT_EQ(MustCompileRegex("\\d{3}").ToString(), "root ::= [0-9] [0-9] [0-9]\n");
  EXPECT_EQ(MustCompileRegex("x*?").ToString(), MustCompileRegex("x*").ToString());
  // The empty regex accepts exactly "".
  Acceptor empty(MustCompileRegex(""));
  EXPECT_TRUE(empty.Accepts(""));
  EXPECT_FALSE(empty.Accepts("a"));
  // A branch that can match nothing is dropped, the rest stays.
  Acceptor partly(MustCompileRegex("a[^\\s\\S]|b"));
  EXPECT_TRUE(partly.Accepts("b"));
  EXPECT_FALSE(partly.Accepts("a"));
  // Long counted runs stay linear in size.
  auto big = CompileRegex("[a-z]{0,5000}");
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_LT(big->rules.size(), 5100u);
  Acceptor big_acceptor(*big);
  EXPECT_TRUE(big_acceptor.Accepts(std::string(5000, 'q')));
  EXPECT_FALSE(big_acceptor.Accepts(std::string(5001, 'q')));
}

TEST(RegexTest, ErrorsNameTheConstructAndOffset) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"(?=a)b", "regex offset 0: lookahead (?= / (?! is not supported"},
      {"a(?!b)", "regex offset 1: lookahead (?= / (?! is not supported"},
      {"a(?<=b)", "regex offset 1: lookbehind (?<= / (?<! is not supported"},
      {"(?<!b)a", "regex offset 0: lookbehind (?<= / (?<! is not supported"},
      {"(a)\\1", "regex offset 3: backreference \\1 is not supported"},
      {"(?<n>a)\\k<n>", "regex offset 7: backreference \\k is not supported"},
      {"(?P<n>a)(?P=n)", "regex offset 8: backreference (?P= is not supported"},
      {"a\\b", "regex offset 1: anchor \\b is not supported"},
      {"\\Aa", "regex offset 0: anchor \\A is not supported"},
      {"a\\z", "regex offset 1: anchor \\z is not supported"},
      {"a^b",
       "regex offset 1: anchor ^ is only supported at the start of the regex or of a top-level "
       "branch"},
      {"a$b",
       "regex offset 1: anchor $ is only supported at the end of the regex or of a top-level "
       "branch"},
      {"(^a)",
       "regex offset 1: anchor ^ is only supported at the start of the regex or of a "
       "top-level branch"},
      {"(a$)",
       "regex offset 2: anchor $ is only supported at the end of the regex or of a top-level "
       "branch"},
      {"*a", "regex offset 0: quantifier * has nothing to repeat"},
      {"a|+", "regex offset 2: quantifier + has nothing to repeat"},
      {"{2}", "regex offset 0: quantifier has nothing to repeat"},
      {"a**", "regex offset 2: quantifier follows another quantifier"},
      {"a{2}{3}", "regex offset 4: quantifier follows another quantifier"},
      {"a*+", "regex offset 2: possessive quantifier is not supported"},
      {"(ab", "regex offset 0: missing ) for this group"},
      {"ab)", "regex offset 2: unmatched )"},
      {"[ab", "regex offset 0: missing ] for this class"},
      {"x[z-a]", "regex offset 2: range out of order"},
      {"[\\d-z]", "regex offset 1: class escape as a range start"},
      {"[a-\\d]", "regex offset 1: class escape as a range end"},
      {"a{3,2}", "regex offset 1: repetition {3,2} has min > max"},
      {"a{10001}", "regex offset 1: repetition count above 10000"},
      {"\\p{L}", "regex offset 0: Unicode property \\p is not supported"},
      {"(?i)a",
       "regex offset 0: group syntax (?i (inline flags, conditionals, recursion) is not "
       "supported"},
      {"(?>a)", "regex offset 0: atomic group (?> is not supported"},
      {"a(?", "regex offset 1: incomplete group (?"},
      {"\\uD800", "regex offset 0: surrogate code point (not valid in UTF-8)"},
      {"ab\\x{110000}", "regex offset 2: code point above U+10FFFF"},
      {"\\xZZ", "regex offset 0: \\x needs 2 hex digits"},
      {"\\u12", "regex offset 0: \\u needs 4 hex digits"},
      {"\\x{12", "regex offset 0: malformed \\x{...} escape"},
      {"[[:alpha:]]", "regex offset 1: POSIX class [: :] is not supported"},
      {"\\q", "regex offset 0: escape \\q is not supported"},
      {"\\012", "regex offset 0: octal escape \\0NN is not supported"},
      {"ab\\", "regex offset 2: trailing backslash"},
      {"a\xFF", "regex offset 1: invalid UTF-8"},
      {"(?<1>a)", "regex offset 0: malformed group name"},
      {"x[^\\s\\S]", "regex offset 1: the regex accepts nothing (this class matches no character)"},
      {"[^\\x00-\\x{10FFFF}]+|y[^\\w\\W]",
       "regex offset 0: the regex accepts nothing (this class matches no character)"},
  };
  for (const auto& [re, want] : cases) {
    auto g = CompileRegex(re);
    ASSERT_FALSE(g.ok()) << Escaped(re) << " compiled:\n" << g->ToString();
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument) << re;
    EXPECT_EQ(g.status().message(), want) << Escaped(re);
  }
  std::string deep;
  for (int i = 0; i < 300; ++i) deep += "(";
  EXPECT_EQ(CompileRegex(deep).status().message(),
            "regex offset 257: groups nested deeper than 256");
}

// Token soup: random sequences of regex syntax. CompileRegex never crashes, fails only with
// InvalidArgument naming an offset, and whenever it accepts a pattern PCRE2 accepts it too and
// both agree on the language.
TEST(RegexTest, TokenSoupAgreesWithPcre2OrIsRefused) {
  const std::vector<std::string> pieces = {
      "(",   ")",   "[",   "]",   "^",       "$",     "\\",         "d",   "w",     "S",   "{",
      "}",   ",",   "1",   "2",   "0",       "*",     "+",          "?",   "|",     "-",   "a",
      "b",   "é",   "😀",   ".",   "\\u00e9", "\\x41", "\\x{1F600}", "(?:", "(?<n>", "[^",  "\\d",
      "\\W", "\\n", "\\.", "\\]", "\\-",     " ",     "\xFF",       "\\b", "(?=",   "\\1", "{2,3}"};
  std::mt19937 rng(4242);
  int compiled = 0;
  int refused = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string re;
    const int n = std::uniform_int_distribution<int>(0, 10)(rng);
    for (int k = 0; k < n; ++k) {
      re += pieces[std::uniform_int_distribution<size_t>(0, pieces.size() - 1)(rng)];
    }
    auto g = CompileRegex(re);
    if (!g.ok()) {
      ++refused;
      EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument) << Escaped(re);
      EXPECT_TRUE(absl::StartsWith(g.status().message(), "regex offset "))
          << Escaped(re) << ": " << g.status();
      continue;
    }
    ++compiled;
    Pcre pcre(re);
    if (!pcre.ok()) {
      ADD_FAILURE() << "compiled, but PCRE2 refuses " << Escaped(re) << ": " << pcre.error();
      continue;
    }
    std::vector<std::string> strings = TestStrings({}, CharPool(), 30, &rng);
    for (const std::string& p : pieces) strings.push_back(p);
    ExpectSameAsPcre(re, strings);
    if (HasFailure()) break;
  }
  std::cerr << "token soup: " << compiled << " compiled, " << refused << " refused\n";
}

}  // namespace
}  // namespace muse::structured
