// CompileRegex: a whole-match regular expression to a Grammar.
//
// A hand-written parser rather than a library: PCRE2 (used by the tokenizer) matches text but
// exposes no syntax tree to lower into grammar rules. The dialect follows PCRE2 in UTF mode without
// UCP (\d \w \s are ASCII, "." is any code point but \n, "]" first in a class is literal, "{" that
// does not start a quantifier is literal) plus ECMAScript's \uHHHH and \u{H..}; tests compare
// acceptance with PCRE2 anchored at both ends. Constructs that change what "whole match" means
// (lookaround, backreferences, anchors other than a leading ^ and a trailing $, possessive
// quantifiers, inline flags) are refused with their offset instead of being approximated.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "src/structured/compile.h"
#include "src/structured/pattern.h"
#include "src/tokenizer/utf8.h"

namespace muse::structured {

namespace {

using pattern::Node;

// Repetition counts above this are refused: {m,n} costs O(n) grammar rules.
constexpr int kMaxRepeat = 10000;
// Groups nested deeper than this are refused (the parser recurses once per level).
constexpr int kMaxDepth = 256;

const std::vector<CodepointRange>& DigitRanges() {
  static const std::vector<CodepointRange> r = {{'0', '9'}};
  return r;
}
const std::vector<CodepointRange>& WordRanges() {
  static const std::vector<CodepointRange> r = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
  return r;
}
const std::vector<CodepointRange>& SpaceRanges(RegexDialect d) {
  static const std::vector<CodepointRange> pcre = {{'\t', '\r'}, {' ', ' '}};  // \t \n \v \f \r
  // ECMA-262 WhiteSpace (TAB VT FF SP NBSP ZWNBSP and category Zs) and LineTerminator (LF CR LS
  // PS).
  static const std::vector<CodepointRange> ecma = {
      {'\t', '\r'},     {' ', ' '},       {0x00A0, 0x00A0}, {0x1680, 0x1680}, {0x2000, 0x200A},
      {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}, {0xFEFF, 0xFEFF}};
  return d == RegexDialect::kEcmaScript ? ecma : pcre;
}
// What "." does not match: \n (PCRE2), or every ECMA-262 LineTerminator.
std::vector<CodepointRange> DotExcludes(RegexDialect d) {
  if (d == RegexDialect::kEcmaScript) return {{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}};
  return {{'\n', '\n'}};
}

bool IsHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
uint32_t HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}
bool IsAsciiAlnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// One escape or character: a single code point, or a class (\d, \W, ...).
struct Atom {
  bool is_class = false;
  uint32_t cp = 0;
  std::vector<CodepointRange> ranges;
};

class RegexParser {
 public:
  RegexParser(std::string_view re, RegexDialect dialect) : re_(re), dialect_(dialect) {}

  absl::StatusOr<Node> Parse() {
    if (size_t bad = tokenizer::FindInvalidUtf8(re_); bad != tokenizer::kUtf8Valid) {
      return Error(bad, "invalid UTF-8");
    }
    absl::StatusOr<Node> n = ParseAlternation(0);
    if (!n.ok()) return n;
    if (pos_ < re_.size()) return Error(pos_, "unmatched )");
    return n;
  }

  // Offset of the first class that matches no code point, for the "accepts nothing" message.
  size_t first_empty_class() const { return first_empty_class_; }

 private:
  absl::Status Error(size_t offset, std::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("regex offset ", offset, ": ", tokenizer::AbslView(what)));
  }
  absl::Status Unsupported(size_t offset, std::string_view construct) const {
    return Error(offset, absl::StrCat(tokenizer::AbslView(construct), " is not supported"));
  }

  bool AtEnd() const { return pos_ >= re_.size(); }
  char Peek(size_t ahead = 0) const { return pos_ + ahead < re_.size() ? re_[pos_ + ahead] : '\0'; }

  absl::StatusOr<Node> ParseAlternation(int depth) {
    if (depth > kMaxDepth)
      return Error(pos_, absl::StrCat("groups nested deeper than ", kMaxDepth));
    std::vector<Node> branches;
    while (true) {
      absl::StatusOr<Node> seq = ParseSequence(depth);
      if (!seq.ok()) return seq;
      branches.push_back(*std::move(seq));
      if (AtEnd() || Peek() != '|') break;
      ++pos_;
    }
    return Node::Alt(std::move(branches));
  }

  absl::StatusOr<Node> ParseSequence(int depth) {
    std::vector<Node> items;
    while (!AtEnd() && Peek() != '|' && Peek() != ')') {
      // Anchors that say nothing in a whole match: ^ opening and $ closing a top-level branch.
      if (depth == 0 && Peek() == '^' && items.empty()) {
        ++pos_;
        continue;
      }
      if (depth == 0 && Peek() == '$' && (pos_ + 1 == re_.size() || re_[pos_ + 1] == '|')) {
        ++pos_;
        continue;
      }
      absl::StatusOr<Node> atom = ParseAtom(depth);
      if (!atom.ok()) return atom;
      absl::StatusOr<Node> item = ParseQuantifiers(*std::move(atom));
      if (!item.ok()) return item;
      items.push_back(*std::move(item));
    }
    return Node::Seq(std::move(items));
  }

  // {m}, {m,} or {m,n} at pos_: true and the counts (and pos_ past "}"), else false (a literal {).
  bool ParseBraces(int* min, int* max, size_t* end) const {
    size_t p = pos_ + 1;
    auto number = [&](int* out) {
      size_t start = p;
      int64_t v = 0;
      while (p < re_.size() && re_[p] >= '0' && re_[p] <= '9') {
        v = std::min<int64_t>(v * 10 + (re_[p] - '0'), int64_t{1} << 40);
        ++p;
      }
      *out = static_cast<int>(std::min<int64_t>(v, INT32_MAX));
      return p > start;
    };
    if (!number(min)) return false;
    if (p < re_.size() && re_[p] == '}') {
      *max = *min;
    } else if (p < re_.size() && re_[p] == ',') {
      ++p;
      if (!number(max)) *max = -1;
      if (p >= re_.size() || re_[p] != '}') return false;
    } else {
      return false;
    }
    *end = p + 1;
    return true;
  }

  absl::StatusOr<Node> ParseQuantifiers(Node atom) {
    bool quantified = false;
    while (!AtEnd()) {
      const size_t at = pos_;
      int min = 0;
      int max = 0;
      size_t after = 0;
      const char c = Peek();
      if (c == '*') {
        min = 0, max = -1, after = pos_ + 1;
      } else if (c == '+') {
        min = 1, max = -1, after = pos_ + 1;
      } else if (c == '?') {
        min = 0, max = 1, after = pos_ + 1;
      } else if (c != '{' || !ParseBraces(&min, &max, &after)) {
        break;
      }
      if (quantified) return Error(at, "quantifier follows another quantifier");
      if (max >= 0 && min > max) {
        return Error(at, absl::StrCat("repetition {", min, ",", max, "} has min > max"));
      }
      if (min > kMaxRepeat || max > kMaxRepeat) {
        return Error(at, absl::StrCat("repetition count above ", kMaxRepeat));
      }
      pos_ = after;
      if (!AtEnd() && Peek() == '?') {
        ++pos_;  // lazy: the same whole-match language
      } else if (!AtEnd() && Peek() == '+') {
        return Unsupported(pos_, "possessive quantifier");
      }
      atom = Node::Repeat(std::move(atom), min, max);
      quantified = true;
    }
    return atom;
  }

  absl::StatusOr<Node> ParseAtom(int depth) {
    const size_t at = pos_;
    const char c = Peek();
    switch (c) {
      case '(':
        return ParseGroup(depth);
      case '[':
        return ParseClass();
      case '.':
        ++pos_;
        return Node::Class(pattern::ComplementRanges(DotExcludes(dialect_)));
      case '^':
        return Error(
            at, "anchor ^ is only supported at the start of the regex or of a top-level branch");
      case '$':
        return Error(at,
                     "anchor $ is only supported at the end of the regex or of a top-level branch");
      case '*':
      case '+':
      case '?':
        return Error(at, absl::StrCat("quantifier ", std::string(1, c), " has nothing to repeat"));
      case '{': {
        int min = 0;
        int max = 0;
        size_t after = 0;
        if (ParseBraces(&min, &max, &after)) return Error(at, "quantifier has nothing to repeat");
        ++pos_;
        return Node::Literal("{");
      }
      case '\\': {
        absl::StatusOr<Atom> a = ParseEscape(/*in_class=*/false);
        if (!a.ok()) return a.status();
        return AtomNode(*a);
      }
      default: {
        size_t p = pos_;
        tokenizer::DecodeUtf8(re_, p);
        std::string bytes(re_.substr(pos_, p - pos_));
        pos_ = p;
        return Node::Literal(std::move(bytes));
      }
    }
  }

  static Node AtomNode(const Atom& a) {
    if (a.is_class) return Node::Class(a.ranges);
    std::string bytes;
    tokenizer::AppendUtf8(a.cp, bytes);
    return Node::Literal(std::move(bytes));
  }

  absl::StatusOr<Node> ParseGroup(int depth) {
    const size_t open = pos_;
    ++pos_;
    if (Peek() == '?') {
      if (pos_ + 1 >= re_.size()) return Error(open, "incomplete group (?");
      const char k = Peek(1);
      if (k == ':') {
        pos_ += 2;
      } else if (k == '=' || k == '!') {
        return Unsupported(open, "lookahead (?= / (?!");
      } else if (k == '<' && (Peek(2) == '=' || Peek(2) == '!')) {
        return Unsupported(open, "lookbehind (?<= / (?<!");
      } else if (k == '<' || k == '\'' || (k == 'P' && Peek(2) == '<')) {
        // Named group: (?<name>..), (?'name'..), (?P<name>..); the name does not matter here.
        const char close = k == '\'' ? '\'' : '>';
        size_t p = pos_ + (k == 'P' ? 3 : 2);
        const size_t name_start = p;
        while (p < re_.size() && (IsAsciiAlnum(re_[p]) || re_[p] == '_')) ++p;
        if (p == name_start || (re_[name_start] >= '0' && re_[name_start] <= '9') ||
            p >= re_.size() || re_[p] != close) {
          return Error(open, "malformed group name");
        }
        pos_ = p + 1;
      } else if (k == 'P' && (Peek(2) == '=' || Peek(2) == '>')) {
        return Unsupported(open, "backreference (?P=");
      } else if (k == '>') {
        return Unsupported(open, "atomic group (?>");
      } else if (k == '#') {
        return Unsupported(open, "comment group (?#");
      } else {
        return Unsupported(open, absl::StrCat("group syntax (?", std::string(1, k),
                                              " (inline flags, conditionals, recursion)"));
      }
    }
    absl::StatusOr<Node> inner = ParseAlternation(depth + 1);
    if (!inner.ok()) return inner;
    if (AtEnd() || Peek() != ')') {
      return Error(open, "missing ) for this group");
    }
    ++pos_;
    return inner;
  }

  // pos_ at "\\". Leaves pos_ after the escape.
  absl::StatusOr<Atom> ParseEscape(bool in_class) {
    const size_t at = pos_;
    ++pos_;
    if (AtEnd()) return Error(at, "trailing backslash");
    const char c = Peek();
    Atom a;
    auto single = [&](uint32_t cp) {
      ++pos_;
      a.cp = cp;
      return a;
    };
    auto cls = [&](const std::vector<CodepointRange>& ranges, bool negate) {
      ++pos_;
      a.is_class = true;
      a.ranges = negate ? pattern::ComplementRanges(ranges) : ranges;
      return a;
    };
    switch (c) {
      case 'd':
        return cls(DigitRanges(), false);
      case 'D':
        return cls(DigitRanges(), true);
      case 'w':
        return cls(WordRanges(), false);
      case 'W':
        return cls(WordRanges(), true);
      case 's':
        return cls(SpaceRanges(dialect_), false);
      case 'S':
        return cls(SpaceRanges(dialect_), true);
      case 'n':
        return single('\n');
      case 'r':
        return single('\r');
      case 't':
        return single('\t');
      case 'f':
        return single('\f');
      case 'v':
        return single('\v');
      case 'a':
        return single(0x07);
      case 'e':
        return single(0x1B);
      case '0':
        if (Peek(1) >= '0' && Peek(1) <= '7') return Unsupported(at, "octal escape \\0NN");
        return single(0);
      case 'x':
      case 'u':
        return ParseHexEscape(at);
      case 'b':
        if (in_class) return single(0x08);  // backspace inside a class, as in PCRE and JS
        return Unsupported(at, "anchor \\b");
      case 'B':
      case 'A':
      case 'z':
      case 'Z':
      case 'G':
        return Unsupported(at, absl::StrCat("anchor \\", std::string(1, c)));
      case 'k':
      case 'g':
        return Unsupported(at, absl::StrCat("backreference \\", std::string(1, c)));
      case 'p':
      case 'P':
        return Unsupported(at, absl::StrCat("Unicode property \\", std::string(1, c)));
      default:
        break;
    }
    if (c >= '1' && c <= '9')
      return Unsupported(at, absl::StrCat("backreference \\", std::string(1, c)));
    if (IsAsciiAlnum(c)) return Unsupported(at, absl::StrCat("escape \\", std::string(1, c)));
    // Any other character escapes itself (metacharacters, punctuation, non-ASCII).
    size_t p = pos_;
    a.cp = tokenizer::DecodeUtf8(re_, p);
    pos_ = p;
    return a;
  }

  // \xHH, \x{H..}, \uHHHH, \u{H..}; pos_ at the x / u.
  absl::StatusOr<Atom> ParseHexEscape(size_t at) {
    const char kind = Peek();
    ++pos_;
    uint64_t v = 0;
    if (Peek() == '{') {
      size_t p = pos_ + 1;
      const size_t start = p;
      while (p < re_.size() && IsHex(re_[p]) && p - start < 8) v = v * 16 + HexValue(re_[p++]);
      if (p == start || p >= re_.size() || re_[p] != '}') {
        return Error(at, absl::StrCat("malformed \\", std::string(1, kind), "{...} escape"));
      }
      pos_ = p + 1;
    } else {
      const size_t digits = kind == 'x' ? 2 : 4;
      for (size_t i = 0; i < digits; ++i) {
        if (!IsHex(Peek())) {
          return Error(at,
                       absl::StrCat("\\", std::string(1, kind), " needs ", digits, " hex digits"));
        }
        v = v * 16 + HexValue(Peek());
        ++pos_;
      }
    }
    if (v > pattern::kMaxCodepoint) return Error(at, "code point above U+10FFFF");
    if (v >= 0xD800 && v <= 0xDFFF) return Error(at, "surrogate code point (not valid in UTF-8)");
    Atom a;
    a.cp = static_cast<uint32_t>(v);
    return a;
  }

  absl::StatusOr<Node> ParseClass() {
    const size_t open = pos_;
    ++pos_;
    bool negate = false;
    if (Peek() == '^' && !AtEnd()) {
      negate = true;
      ++pos_;
    }
    std::vector<CodepointRange> ranges;
    bool first = true;
    while (true) {
      if (AtEnd()) return Error(open, "missing ] for this class");
      if (Peek() == ']' && !first) break;
      first = false;
      const size_t item_at = pos_;
      if (Peek() == '[' && (Peek(1) == ':' || Peek(1) == '.' || Peek(1) == '=')) {
        return Unsupported(item_at, "POSIX class [: :]");
      }
      absl::StatusOr<Atom> lo = ClassAtom();
      if (!lo.ok()) return lo.status();
      if (Peek() == '-' && pos_ + 1 < re_.size() && Peek(1) != ']') {
        if (lo->is_class) return Error(item_at, "class escape as a range start");
        ++pos_;
        absl::StatusOr<Atom> hi = ClassAtom();
        if (!hi.ok()) return hi.status();
        if (hi->is_class) return Error(item_at, "class escape as a range end");
        if (hi->cp < lo->cp) return Error(item_at, "range out of order");
        ranges.push_back({lo->cp, hi->cp});
      } else if (lo->is_class) {
        ranges.insert(ranges.end(), lo->ranges.begin(), lo->ranges.end());
      } else {
        ranges.push_back({lo->cp, lo->cp});
      }
    }
    ++pos_;  // ]
    ranges = pattern::NormalizeRanges(ranges);
    if (negate) ranges = pattern::ComplementRanges(ranges);
    if (ranges.empty() && first_empty_class_ == std::string_view::npos) first_empty_class_ = open;
    return Node::Class(ranges);
  }

  absl::StatusOr<Atom> ClassAtom() {
    if (Peek() == '\\') return ParseEscape(/*in_class=*/true);
    size_t p = pos_;
    Atom a;
    a.cp = tokenizer::DecodeUtf8(re_, p);
    pos_ = p;
    return a;
  }

  std::string_view re_;
  RegexDialect dialect_;
  size_t pos_ = 0;
  size_t first_empty_class_ = std::string_view::npos;
};

}  // namespace

absl::StatusOr<Grammar> CompileRegex(std::string_view regex, RegexDialect dialect) {
  RegexParser parser(regex, dialect);
  absl::StatusOr<Node> root = parser.Parse();
  if (!root.ok()) return root.status();
  if (root->kind == Node::Kind::kNothing) {
    return absl::InvalidArgumentError(
        absl::StrCat("regex offset ", parser.first_empty_class(),
                     ": the regex accepts nothing (this class matches no character)"));
  }
  GrammarBuilder builder;
  const int32_t rule = builder.AddRule("root");
  pattern::Lowerer lowerer(&builder);
  absl::StatusOr<std::vector<Alternative>> alts = lowerer.Alternatives(*root);
  if (!alts.ok()) return alts.status();
  for (Alternative& alt : *alts) builder.AddAlternative(rule, std::move(alt));
  return std::move(builder).Finish(rule);
}

}  // namespace muse::structured
