// EBNF (GBNF-like) and choice front ends (compile.h). Languages are checked through the real
// GrammarMatcher against independent oracles: nlohmann::json::accept for a JSON grammar, a small
// recursive-descent recognizer for arithmetic (iterative and left-recursive grammars), PCRE2 for
// regular grammars. Errors are checked word for word (they name the line:column).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "src/structured/compile.h"
#include "tests/structured/frontend_test_util.h"

namespace muse::structured {
namespace {

using frontend_test::Acceptor;
using frontend_test::Escaped;
using frontend_test::MustCompileEbnf;
using frontend_test::Pcre;
using frontend_test::TestStrings;

// ---- EBNF ----

// JSON, written for this test (RFC 8259: any value at the top, whitespace around tokens).
constexpr const char* kJsonGrammar = R"gbnf(# JSON text (RFC 8259)
root    ::= ws value ws
value   ::= object | array | string | number | "true" | "false" | "null"

object  ::=
  "{" ws (
    member (ws "," ws member)*
  ws )? "}"
member  ::= string ws ":" ws value
array   ::= "[" ws ( value (ws "," ws value)* ws )? "]"

string  ::= "\"" char* "\""
char    ::= [^"\\\x00-\x1F]        # anything but a quote, backslash or control
          | "\\" (["\\/bfnrt] | "u" hex{4})
hex     ::= [0-9a-fA-F]

number  ::= "-"? int frac? exp?
int     ::= "0" | [1-9] [0-9]*
frac    ::= "." [0-9]+
exp     ::= [eE] [+-]? [0-9]+
ws      ::= [ \t\n\r]*
)gbnf";

std::string RandomJson(std::mt19937* rng, int depth, bool spaced) {
  auto u = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(*rng); };
  auto ws = [&]() -> std::string {
    if (!spaced) return "";
    static const char* kWs[] = {"", " ", "\n", "\t ", "\r\n  "};
    return kWs[u(0, 4)];
  };
  const int kind = depth <= 0 ? u(0, 3) : u(0, 5);
  switch (kind) {
    case 0: {
      static const char* kLit[] = {"true", "false", "null"};
      return kLit[u(0, 2)];
    }
    case 1: {
      std::string n = u(0, 1) ? "-" : "";
      n += u(0, 3) == 0 ? "0" : std::to_string(u(1, 99999));
      if (u(0, 1)) n += "." + std::to_string(u(0, 999));
      if (u(0, 2) == 0)
        n += std::string(u(0, 1) ? "e" : "E") + (u(0, 1) ? "-" : "") + std::to_string(u(0, 9));
      return n;
    }
    case 2:
    case 3: {
      static const char* kPieces[] = {"a",       "Z",       " ",    "é",    "中",
                                      "😀",       "\\n",     "\\\"", "\\\\", "\\/",
                                      "\\u00e9", "\\u20AC", "\\t",  "\\b",  "'"};
      std::string s = "\"";
      const int n = u(0, 5);
      for (int i = 0; i < n; ++i) s += kPieces[u(0, 14)];
      return s + "\"";
    }
    case 4: {
      std::string s = "[" + ws();
      const int n = u(0, 3);
      for (int i = 0; i < n; ++i)
        s += (i ? ws() + "," + ws() : "") + RandomJson(rng, depth - 1, spaced);
      return s + ws() + "]";
    }
    default: {
      std::string s = "{" + ws();
      const int n = u(0, 3);
      for (int i = 0; i < n; ++i) {
        s += (i ? ws() + "," + ws() : "") + "\"k" + std::to_string(i) + "\"" + ws() + ":" + ws() +
             RandomJson(rng, depth - 1, spaced);
      }
      return s + ws() + "}";
    }
  }
}

TEST(EbnfTest, JsonGrammarAgreesWithNlohmann) {
  Acceptor json(MustCompileEbnf(kJsonGrammar));
  std::mt19937 rng(7);
  std::vector<std::string> seeds;
  for (int i = 0; i < 150; ++i) seeds.push_back(RandomJson(&rng, 3, i % 2 == 1));
  const std::vector<std::string> alphabet = {"{",  "}", "[", "]",  ",", ":", "\"",
                                             "\\", "0", "1", "-",  "+", ".", "e",
                                             "t",  "n", " ", "\n", "x", "é", "\x01"};
  std::vector<std::string> strings = TestStrings(seeds, alphabet, 200, &rng);
  for (const char* s :
       {"0",        "-0",         "01",         "1.",        ".5",        "+1",
        "1e5",      "1E+05",      "[]",         "[,]",       "[1,]",      "{}",
        "{\"a\"}",  "{\"a\":1,}", " \"x\" ",    "\"\\u12\"", "\"\\x41\"", "\"a\nb\"",
        "\"\xC3\"", "nul",        "true false", "[[[[[]]]]]"}) {
    strings.emplace_back(s);
  }
  int valid = 0;
  int mismatches = 0;
  for (const std::string& s : strings) {
    // nlohmann refuses a lone surrogate escape, the grammar (like RFC 8259's ABNF) allows it.
    if (s.find("\\u") != std::string::npos && s.find("\\ud") != std::string::npos) continue;
    const bool want = nlohmann::json::accept(s);
    valid += want;
    if (json.Accepts(s) != want && ++mismatches <= 10) {
      ADD_FAILURE() << "\"" << Escaped(s) << "\": nlohmann says " << want;
    }
  }
  EXPECT_GT(valid, 150);
  std::cerr << "JSON strings: " << strings.size() << ", valid: " << valid << "\n";
}

// Arithmetic: a recursive-descent recognizer as the oracle.
class ArithOracle {
 public:
  static bool Accepts(std::string_view s) {
    ArithOracle o(s);
    return o.Expr() && o.p_ == s.size();
  }

 private:
  explicit ArithOracle(std::string_view s) : s_(s) {}
  bool Expr() {
    if (!Term()) return false;
    while (p_ < s_.size() && (s_[p_] == '+' || s_[p_] == '-')) {
      ++p_;
      if (!Term()) return false;
    }
    return true;
  }
  bool Term() {
    if (!Factor()) return false;
    while (p_ < s_.size() && (s_[p_] == '*' || s_[p_] == '/')) {
      ++p_;
      if (!Factor()) return false;
    }
    return true;
  }
  bool Factor() {
    if (p_ < s_.size() && s_[p_] == '-') {
      ++p_;
      return Factor();
    }
    if (p_ < s_.size() && s_[p_] == '(') {
      ++p_;
      if (!Expr() || p_ >= s_.size() || s_[p_] != ')') return false;
      ++p_;
      return true;
    }
    if (p_ < s_.size() && s_[p_] >= 'a' && s_[p_] <= 'z') {
      ++p_;
      return true;
    }
    const size_t start = p_;
    while (p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9') ++p_;
    if (p_ == start) return false;
    if (p_ < s_.size() && s_[p_] == '.') {
      ++p_;
      const size_t frac = p_;
      while (p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9') ++p_;
      if (p_ == frac) return false;
    }
    return true;
  }
  std::string_view s_;
  size_t p_ = 0;
};

constexpr const char* kArithIterative = R"gbnf(
root   ::= expr
expr   ::= term (("+" | "-") term)*
term   ::= factor (("*" | "/") factor)*
factor ::= "-" factor | "(" expr ")" | [a-z] | number
number ::= [0-9]+ ("." [0-9]+)?
)gbnf";

// The same language, left-recursive (Earley handles left recursion directly).
constexpr const char* kArithLeftRecursive = R"gbnf(
root   ::= expr
expr   ::= expr "+" term | expr "-" term | term
term   ::= term "*" factor | term "/" factor | factor
factor ::= "-" factor | "(" expr ")" | [a-z] | number
number ::= digits | digits "." digits
digits ::= digits [0-9] | [0-9]
)gbnf";

std::string RandomArith(std::mt19937* rng, int depth) {
  auto u = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(*rng); };
  const int kind = depth <= 0 ? u(0, 1) : u(0, 4);
  switch (kind) {
    case 0:
      return std::string(1, static_cast<char>('a' + u(0, 25)));
    case 1:
      return std::to_string(u(0, 999)) + (u(0, 2) == 0 ? "." + std::to_string(u(0, 99)) : "");
    case 2:
      return "(" + RandomArith(rng, depth - 1) + ")";
    case 3:
      return "-" + RandomArith(rng, depth - 1);
    default: {
      static const char kOps[] = "+-*/";
      return RandomArith(rng, depth - 1) + kOps[u(0, 3)] + RandomArith(rng, depth - 1);
    }
  }
}

TEST(EbnfTest, ArithmeticIterativeAndLeftRecursiveAgreeWithOracle) {
  Acceptor iterative(MustCompileEbnf(kArithIterative));
  Acceptor left(MustCompileEbnf(kArithLeftRecursive));
  std::mt19937 rng(99);
  std::vector<std::string> seeds;
  for (int i = 0; i < 200; ++i) seeds.push_back(RandomArith(&rng, 4));
  const std::vector<std::string> alphabet = {"1", "0", ".", "+", "-", "*", "/", "(", ")", "x", " "};
  std::vector<std::string> strings = TestStrings(seeds, alphabet, 300, &rng);
  int valid = 0;
  int mismatches = 0;
  for (const std::string& s : strings) {
    const bool want = ArithOracle::Accepts(s);
    valid += want;
    if ((iterative.Accepts(s) != want || left.Accepts(s) != want) && ++mismatches <= 10) {
      ADD_FAILURE() << "\"" << s << "\": oracle says " << want << ", iterative "
                    << iterative.Accepts(s) << ", left-recursive " << left.Accepts(s);
    }
  }
  EXPECT_GT(valid, 200);
  // A long left-recursive run.
  std::string long_sum = "1";
  for (int i = 0; i < 2000; ++i) long_sum += "+x";
  EXPECT_TRUE(left.Accepts(long_sum));
  EXPECT_FALSE(left.Accepts(long_sum + "+"));
}

// Regular languages written in EBNF, checked against PCRE2 on exhaustive short strings.
TEST(EbnfTest, RegularGrammarsAgreeWithEquivalentRegexes) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"root ::= [a-c]{2,3} (\"x\" | \"yz\")*", "[a-c]{2,3}(?:x|yz)*"},
      {"root ::= \"a\"{3} | \"b\"{0,2} \"c\"{1,}", "a{3}|b{0,2}c+"},
      {"root ::= ( [^a\\n] | \"\\n\" )? \"a\"+", "(?:[^a\\n]|\\n)?a+"},
      {"root ::= x x\nx ::= \"é\" | [\\u4e00-\\u9fff] | \"\\U0001F600\"",
       "(?:é|[\\u4e00-\\u9fff]|\\x{1F600}){2}"},
      {"root ::= . .?", "(?s:.{1,2})"},  // EBNF "." is any code point, newline included
      {"root ::= [\\[\\]\\-\\^\\\\] [\\x41-\\x43]", "[\\[\\]\\-\\^\\\\][A-C]"},
      {"root ::= (\"ab\" | \"a\")* \"b\"", "(?:ab|a)*b"},
  };
  const std::vector<std::string> alphabet = {"a", "b",  "c", "x", "y", "z", "\n",
                                             "é", "中", "😀", "[", "^", "A", "\\"};
  // Every string of up to 4 characters over the alphabet.
  std::vector<std::string> strings = {""};
  for (size_t begin = 0, len = 0; len < 4; ++len) {
    const size_t end = strings.size();
    for (size_t i = begin; i < end; ++i) {
      for (const std::string& c : alphabet) strings.push_back(strings[i] + c);
    }
    begin = end;
  }
  for (const auto& [ebnf, re] : cases) {
    SCOPED_TRACE(ebnf);
    Acceptor ours(MustCompileEbnf(ebnf));
    Pcre pcre(re);
    ASSERT_TRUE(pcre.ok()) << pcre.error();
    int matched = 0;
    int mismatches = 0;
    for (const std::string& s : strings) {
      const bool want = pcre.Matches(s);
      matched += want;
      if (ours.Accepts(s) != want && ++mismatches <= 5) {
        ADD_FAILURE() << "\"" << Escaped(s) << "\": PCRE2 " << re << " says " << want;
      }
    }
    EXPECT_GT(matched, 0);
  }
}

// Grammars in the style of llama.cpp's examples (written for this test).
TEST(EbnfTest, ExampleStyleGrammars) {
  // A bulleted to-do list: multi-line rules, comments, negated classes, bounded repeats.
  Acceptor todo(MustCompileEbnf(R"gbnf(
# A short to-do list.
root ::= header item{1,3}
header ::= "TODO:\n"
item ::=
    "- [" ( " " | "x" ) "] "   # unchecked or done
    task "\n"
task ::= [^\n\[\]]{1,30}
)gbnf"));
  EXPECT_TRUE(todo.Accepts("TODO:\n- [ ] buy milk\n- [x] écrire 😀\n"));
  EXPECT_FALSE(todo.Accepts("TODO:\n"));
  EXPECT_FALSE(todo.Accepts("TODO:\n- [?] a\n"));
  EXPECT_FALSE(todo.Accepts("TODO:\n- [ ] a\n- [ ] b\n- [ ] c\n- [ ] d\n"));
  EXPECT_FALSE(todo.Accepts("TODO:\n- [ ] " + std::string(31, 'a') + "\n"));

  // An answer with a reason; alternatives on their own lines.
  Acceptor answer(MustCompileEbnf(R"gbnf(root ::= verdict "\n" reason
verdict
  ::= "Answer: yes"
    | "Answer: no"
    | "Answer: unsure"
reason ::= "Because " [a-zA-Z ,']+ "."
)gbnf"));
  EXPECT_TRUE(answer.Accepts("Answer: no\nBecause it's late, really."));
  EXPECT_FALSE(answer.Accepts("Answer: maybe\nBecause x."));
  EXPECT_FALSE(answer.Accepts("Answer: yes\nBecause ."));

  // A chess-like move list with numbered turns.
  Acceptor moves(MustCompileEbnf(R"gbnf(
root  ::= turn (" " turn)*
turn  ::= [1-9] [0-9]? ". " move (" " move)?
move  ::= piece? file rank | "O-O" | "O-O-O"
piece ::= [KQRBN]
file  ::= [a-h]
rank  ::= [1-8]
)gbnf"));
  EXPECT_TRUE(moves.Accepts("1. e4 e5 2. Nf3 Nc6 3. O-O"));
  EXPECT_FALSE(moves.Accepts("1. e9"));
  EXPECT_FALSE(moves.Accepts("1. e4  e5"));

  // Non-ASCII literals, classes and "." (any code point).
  Acceptor greek(MustCompileEbnf("root ::= [α-ω]+ \"→\" . \"\\u00e9\""));
  EXPECT_TRUE(greek.Accepts("αβγ→😀é"));
  EXPECT_TRUE(greek.Accepts("ω→\né"));
  EXPECT_FALSE(greek.Accepts("Α→xé"));  // capital alpha
}

TEST(EbnfTest, StructureAndNames) {
  // User rules keep their names; unreachable rules are dropped; an empty body derives "".
  Grammar g = MustCompileEbnf("root ::= a \"!\" \na ::= \"x\" | \nunused ::= \"u\"");
  EXPECT_EQ(g.ToString(), "root ::= a \"!\"\na ::= \"x\" | \"\"\n");
  // A rule named like a helper rule keeps its name; the helper is renamed.
  Grammar h = MustCompileEbnf("root ::= star \"y\"* \nstar ::= \"s\"");
  EXPECT_NE(h.ToString().find("star ::= \"s\""), std::string::npos) << h.ToString();
  Acceptor hs(h);
  EXPECT_TRUE(hs.Accepts("syy"));
  EXPECT_FALSE(hs.Accepts("ys"));
}

TEST(EbnfTest, ErrorsNameLineAndColumn) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"root ::= foo", "grammar line 1:10: rule \"foo\" is used but never defined"},
      {"root ::= \"a\"\n  | \"b\" bar\n",
       "grammar line 2:9: rule \"bar\" is used but never defined"},
      {"root ::= \"é\" zz", "grammar line 1:14: rule \"zz\" is used but never defined"},
      {"start ::= \"a\"", "grammar: no rule named \"root\" (the start rule)"},
      {"root ::= \"a\"\nroot ::= \"b\"",
       "grammar line 2:1: rule \"root\" is defined twice (first at 1:1)"},
      {"root ::= \"abc", "grammar line 1:10: unterminated string (missing \")"},
      {"root ::= \"ab\nc\"", "grammar line 1:10: newline inside a string (write \\n)"},
      {"root ::= [a-", "grammar line 1:10: unterminated character class (missing ])"},
      {"root ::= \"a\" [z-a]", "grammar line 1:15: range out of order"},
      {"root ::= (\"a\" ", "grammar line 1:10: missing ) for this group"},
      {"root ::= \"a\" )", "grammar line 1:14: unexpected ')'"},
      {"root ::= \"a\"{3,1}", "grammar line 1:13: repetition {3,1} has min > max"},
      {"root ::= \"a\"{x}", "grammar line 1:13: repetition {m,n} needs a number after {"},
      {"root ::= \"a\"{2", "grammar line 1:13: malformed repetition (expected , or })"},
      {"root ::= \"a\"{20000}", "grammar line 1:13: repetition count above 10000"},
      {"root ::= \"\\q\"", "grammar line 1:11: unknown escape \\q"},
      {"root ::= \"\\x4\"", "grammar line 1:11: \\x needs 2 hex digits"},
      {"root ::= \"\\uD800\"", "grammar line 1:11: surrogate code point (not valid in UTF-8)"},
      {"root ::= \"\\U00110000\"", "grammar line 1:11: code point above U+10FFFF"},
      {"root ::= [^\\x00-\\U0010FFFF]", "grammar line 1:10: character class matches no character"},
      {"root ::= a\n# loops\na ::= a \"x\"",
       "grammar line 3:1: rule \"a\" can never finish (every alternative needs a rule that never "
       "finishes, e.g. itself, without a base case)"},
      {"root ::= <think> \"a\"",
       "grammar line 1:10: token references (<...>) are not supported: grammars match text"},
      {"root = \"a\"", "grammar line 1:6: expected ::= after rule name \"root\", found '='"},
      {"::= \"a\"", "grammar line 1:1: expected a rule name, found ':'"},
      {"root ::= \"a\" ; ", "grammar line 1:14: unexpected ';'"},
      {"root ::= \"a\"\xFF", "grammar line 1:13: invalid UTF-8"},
      {"", "grammar: no rule named \"root\" (the start rule)"},
  };
  for (const auto& [text, want] : cases) {
    auto g = CompileEbnf(text);
    ASSERT_FALSE(g.ok()) << Escaped(text) << " compiled:\n" << g->ToString();
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_EQ(g.status().message(), want) << Escaped(text);
  }
}

// ---- choices ----

TEST(ChoiceTest, ExactlyOneOfTheChoices) {
  auto g = ChoiceGrammar({"yes", "no", "yes", "nope", "", "😀"});
  ASSERT_TRUE(g.ok()) << g.status();
  Acceptor a(*g);
  for (const char* s : {"yes", "no", "nope", "", "😀"}) EXPECT_TRUE(a.Accepts(s)) << s;
  for (const char* s : {"ye", "yesno", "n", "nop", "no ", "\xF0\x9F"})
    EXPECT_FALSE(a.Accepts(s)) << s;
  // The duplicate "yes" adds no alternative.
  EXPECT_EQ(g->rules[g->root].alternatives.size(), 5u);

  auto empty = ChoiceGrammar({});
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(empty.status().message(), "choice: the list of choices is empty");
}

// Token soup: random sequences of EBNF syntax never crash, fail only with InvalidArgument naming a
// line:column (or the missing root), and what compiles is a valid grammar for the matcher.
TEST(EbnfTest, TokenSoupCompilesOrIsRefused) {
  const std::vector<std::string> pieces = {"root",
                                           " ::= ",
                                           "a",
                                           "b-2",
                                           "::=",
                                           "\n",
                                           "\n  | ",
                                           " | ",
                                           "|",
                                           "(",
                                           ")",
                                           "[",
                                           "]",
                                           "[^",
                                           "a-z",
                                           "\"",
                                           "\"x\"",
                                           "\"\\u00e9\"",
                                           "\\",
                                           "*",
                                           "+",
                                           "?",
                                           "{",
                                           "}",
                                           "{1,2}",
                                           ",",
                                           "3",
                                           ".",
                                           "# c\n",
                                           " ",
                                           "é",
                                           "<",
                                           "\"\\\"",
                                           "root ::= a\n",
                                           "a ::= \"q\" a | \"\"\n"};
  std::mt19937 rng(31);
  int compiled = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string text = std::uniform_int_distribution<int>(0, 1)(rng) ? "root ::= " : "";
    const int n = std::uniform_int_distribution<int>(0, 12)(rng);
    for (int k = 0; k < n; ++k) {
      text += pieces[std::uniform_int_distribution<size_t>(0, pieces.size() - 1)(rng)];
    }
    auto g = CompileEbnf(text);
    if (!g.ok()) {
      EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument) << Escaped(text);
      const std::string_view msg(g.status().message().data(), g.status().message().size());
      EXPECT_TRUE(msg.rfind("grammar line ", 0) == 0 || msg.rfind("grammar: ", 0) == 0)
          << Escaped(text) << ": " << msg;
      continue;
    }
    ++compiled;
    Acceptor a(*g);  // CompiledGrammar::Create must take it
  }
  EXPECT_GT(compiled, 1000);
  std::cerr << "EBNF token soup: " << compiled << " of 20000 compiled\n";
}

}  // namespace
}  // namespace muse::structured
