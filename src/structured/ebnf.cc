// CompileEbnf (GBNF-like grammars, llama.cpp's grammars/README.md format) and ChoiceGrammar.
//
// The dialect: `name ::= alternatives`, names of [A-Za-z0-9_-]; "strings" and [classes] with
// [^negation], ranges and the escapes \n \r \t \\ \" \[ \] (any ASCII punctuation escapes itself),
// \xHH, \uHHHH, \UHHHHHHHH (code points, encoded as UTF-8); ( groups ); "." = any code point;
// postfix * + ? {m} {m,} {m,n}; # comments. Newlines are whitespace everywhere: a rule ends where
// the next `name ::=` begins, so GBNF's one-line and indented multi-line rules both parse. The
// root is the rule named "root". Token references (<...>) are refused: grammars here are over
// text bytes. Errors name the line:column.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "src/structured/compile.h"
#include "src/structured/pattern.h"
#include "src/tokenizer/utf8.h"

namespace muse::structured {

namespace {

using pattern::Node;

constexpr int kMaxRepeat = 10000;  // {m,n} costs O(n) grammar rules
constexpr int kMaxDepth = 256;     // nested groups (the parser recurses once per level)

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}
bool IsHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
uint32_t HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

class EbnfParser {
 public:
  explicit EbnfParser(std::string_view text) : text_(text) {}

  absl::StatusOr<Grammar> Compile() && {
    if (size_t bad = tokenizer::FindInvalidUtf8(text_); bad != tokenizer::kUtf8Valid) {
      return Error(bad, "invalid UTF-8");
    }
    if (absl::Status st = ParseRules(); !st.ok()) return st;
    const int32_t root = FindName("root");
    if (root < 0 || !rules_[root].defined) {
      return absl::InvalidArgumentError("grammar: no rule named \"root\" (the start rule)");
    }
    for (const RuleInfo& r : rules_) {
      if (!r.defined) {
        return Error(r.first_ref, absl::StrCat("rule \"", r.name, "\" is used but never defined"));
      }
    }
    if (absl::Status st = CheckProductive(root); !st.ok()) return st;
    pattern::Lowerer lowerer(&builder_);
    for (size_t i = 0; i < rules_.size(); ++i) {
      lowerer.set_group_name(absl::StrCat(rules_[i].name, "_group"));
      absl::StatusOr<std::vector<Alternative>> alts = lowerer.Alternatives(rules_[i].body);
      if (!alts.ok()) return alts.status();
      for (Alternative& alt : *alts)
        builder_.AddAlternative(static_cast<int32_t>(i), std::move(alt));
    }
    return std::move(builder_).Finish(root);
  }

 private:
  struct RuleInfo {
    std::string name;
    bool defined = false;
    size_t def_pos = 0;
    size_t first_ref = 0;
    Node body;
  };

  // "L:C" of a byte offset; columns count code points.
  std::string Position(size_t offset) const {
    int line = 1;
    int column = 1;
    for (size_t i = 0; i < offset && i < text_.size(); ++i) {
      const auto b = static_cast<uint8_t>(text_[i]);
      if (b == '\n') {
        ++line;
        column = 1;
      } else if ((b & 0xC0) != 0x80) {
        ++column;
      }
    }
    return absl::StrCat(line, ":", column);
  }

  absl::Status Error(size_t offset, std::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("grammar line ", Position(offset), ": ", tokenizer::AbslView(what)));
  }

  bool AtEnd() const { return pos_ >= text_.size(); }
  char Peek(size_t ahead = 0) const {
    return pos_ + ahead < text_.size() ? text_[pos_ + ahead] : '\0';
  }
  // A printable description of the character at pos_ for messages.
  std::string Here() const {
    if (AtEnd()) return "end of input";
    size_t p = pos_;
    tokenizer::DecodeUtf8(text_, p);
    return absl::StrCat("'", tokenizer::AbslView(text_.substr(pos_, p - pos_)), "'");
  }

  // The first offset at or after `p` that is not whitespace or a # comment.
  size_t SpaceEnd(size_t p) const {
    while (p < text_.size()) {
      const char c = text_[p];
      if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
        ++p;
      } else if (c == '#') {
        while (p < text_.size() && text_[p] != '\n') ++p;
      } else {
        break;
      }
    }
    return p;
  }
  void SkipSpace() { pos_ = SpaceEnd(pos_); }

  std::string_view NameAt(size_t p) const {
    size_t e = p;
    while (e < text_.size() && IsNameChar(text_[e])) ++e;
    return text_.substr(p, e - p);
  }

  // A rule definition starts at pos_: a name, optional space, "::=".
  bool AtDefinition() const {
    const std::string_view name = NameAt(pos_);
    if (name.empty()) return false;
    return text_.substr(SpaceEnd(pos_ + name.size()), 3) == "::=";
  }

  int32_t FindName(std::string_view name) const {
    auto it = index_.find(tokenizer::AbslView(name));
    return it == index_.end() ? -1 : it->second;
  }

  // The rule `name`, declared to the builder on first mention (so user rules keep their names and
  // the builder index equals the index into rules_).
  int32_t Declare(std::string_view name, size_t at) {
    if (int32_t i = FindName(name); i >= 0) return i;
    const int32_t i = builder_.AddRule(name);
    index_.emplace(std::string(name), i);
    RuleInfo info;
    info.name = std::string(name);
    info.first_ref = at;
    rules_.push_back(std::move(info));
    return i;
  }

  absl::Status ParseRules() {
    SkipSpace();
    while (!AtEnd()) {
      const size_t at = pos_;
      const std::string_view name = NameAt(pos_);
      if (name.empty()) return Error(at, absl::StrCat("expected a rule name, found ", Here()));
      pos_ += name.size();
      SkipSpace();
      if (text_.substr(pos_, 3) != "::=") {
        return Error(pos_, absl::StrCat("expected ::= after rule name \"",
                                        tokenizer::AbslView(name), "\", found ", Here()));
      }
      pos_ += 3;
      const int32_t rule = Declare(name, at);
      if (rules_[rule].defined) {
        return Error(
            at, absl::StrCat("rule \"", tokenizer::AbslView(name), "\" is defined twice (first at ",
                             Position(rules_[rule].def_pos), ")"));
      }
      rules_[rule].defined = true;
      rules_[rule].def_pos = at;
      absl::StatusOr<Node> body = ParseAlternatives(0);
      if (!body.ok()) return body.status();
      rules_[rule].body = *std::move(body);
      SkipSpace();
      if (!AtEnd() && !AtDefinition()) {
        return Error(pos_, absl::StrCat("unexpected ", Here()));
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Node> ParseAlternatives(int depth) {
    if (depth > kMaxDepth)
      return Error(pos_, absl::StrCat("groups nested deeper than ", kMaxDepth));
    std::vector<Node> branches;
    while (true) {
      absl::StatusOr<Node> seq = ParseSequence(depth);
      if (!seq.ok()) return seq;
      branches.push_back(*std::move(seq));
      SkipSpace();
      if (Peek() != '|') break;
      ++pos_;
    }
    return Node::Alt(std::move(branches));
  }

  absl::StatusOr<Node> ParseSequence(int depth) {
    std::vector<Node> items;
    while (true) {
      SkipSpace();
      if (AtEnd() || Peek() == '|' || Peek() == ')' || AtDefinition()) break;
      absl::StatusOr<Node> item = ParsePrimary(depth);
      if (!item.ok()) return item;
      absl::StatusOr<Node> quantified = ParseQuantifiers(*std::move(item));
      if (!quantified.ok()) return quantified;
      items.push_back(*std::move(quantified));
    }
    return Node::Seq(std::move(items));
  }

  absl::StatusOr<Node> ParsePrimary(int depth) {
    const size_t at = pos_;
    const char c = Peek();
    if (c == '"') return ParseString();
    if (c == '[') return ParseClass();
    if (c == '.') {
      ++pos_;
      return Node::Class({{0, pattern::kMaxCodepoint}});
    }
    if (c == '(') {
      ++pos_;
      absl::StatusOr<Node> inner = ParseAlternatives(depth + 1);
      if (!inner.ok()) return inner;
      SkipSpace();
      if (Peek() != ')') return Error(at, "missing ) for this group");
      ++pos_;
      return inner;
    }
    if (IsNameChar(c)) {
      const std::string_view name = NameAt(pos_);
      pos_ += name.size();
      return Node::RuleRef(Declare(name, at));
    }
    if (c == '<' || (c == '!' && Peek(1) == '<')) {
      return Error(at, "token references (<...>) are not supported: grammars match text");
    }
    return Error(at, absl::StrCat("unexpected ", Here()));
  }

  // Postfix quantifiers; they stack ("x?*", "x{2}{3}") as in llama.cpp, up to kMaxDepth in a row
  // (each one nests the tree a level deeper).
  absl::StatusOr<Node> ParseQuantifiers(Node item) {
    for (int count = 0;; ++count) {
      // Whitespace may separate an item from its quantifier.
      const size_t save = pos_;
      SkipSpace();
      const size_t at = pos_;
      const char c = Peek();
      int min = 0;
      int max = 0;
      if (c == '*') {
        min = 0, max = -1, ++pos_;
      } else if (c == '+') {
        min = 1, max = -1, ++pos_;
      } else if (c == '?') {
        min = 0, max = 1, ++pos_;
      } else if (c == '{') {
        if (absl::Status st = ParseBraces(&min, &max); !st.ok()) return st;
        if (max >= 0 && min > max) {
          return Error(at, absl::StrCat("repetition {", min, ",", max, "} has min > max"));
        }
        if (min > kMaxRepeat || max > kMaxRepeat) {
          return Error(at, absl::StrCat("repetition count above ", kMaxRepeat));
        }
      } else {
        pos_ = save;
        return item;
      }
      if (count == kMaxDepth) {
        return Error(at, absl::StrCat("more than ", kMaxDepth, " quantifiers in a row"));
      }
      item = Node::Repeat(std::move(item), min, max);
    }
  }

  // {m}, {m,}, {m,n} (spaces allowed inside); pos_ at "{".
  absl::Status ParseBraces(int* min, int* max) {
    const size_t open = pos_;
    ++pos_;
    auto number = [&](int* out) {
      SkipSpace();
      const size_t start = pos_;
      int64_t v = 0;
      while (!AtEnd() && Peek() >= '0' && Peek() <= '9') {
        v = std::min<int64_t>(v * 10 + (Peek() - '0'), int64_t{1} << 40);
        ++pos_;
      }
      *out = static_cast<int>(std::min<int64_t>(v, INT32_MAX));
      SkipSpace();
      return pos_ > start;
    };
    if (!number(min)) return Error(open, "repetition {m,n} needs a number after {");
    if (Peek() == '}') {
      ++pos_;
      *max = *min;
      return absl::OkStatus();
    }
    if (Peek() != ',') return Error(open, "malformed repetition (expected , or })");
    ++pos_;
    if (!number(max)) *max = -1;
    if (Peek() != '}') return Error(open, "malformed repetition (expected })");
    ++pos_;
    return absl::OkStatus();
  }

  // One character of a string or class at pos_ (an escape or a UTF-8 character).
  absl::StatusOr<uint32_t> ParseChar() {
    const size_t at = pos_;
    if (Peek() != '\\') {
      size_t p = pos_;
      const uint32_t cp = tokenizer::DecodeUtf8(text_, p);
      pos_ = p;
      return cp;
    }
    ++pos_;
    if (AtEnd()) return Error(at, "trailing backslash");
    const char c = Peek();
    ++pos_;
    switch (c) {
      case 'n':
        return uint32_t{'\n'};
      case 'r':
        return uint32_t{'\r'};
      case 't':
        return uint32_t{'\t'};
      case 'x':
      case 'u':
      case 'U': {
        const int digits = c == 'x' ? 2 : c == 'u' ? 4 : 8;
        uint64_t v = 0;
        for (int i = 0; i < digits; ++i) {
          if (!IsHex(Peek())) {
            return Error(at,
                         absl::StrCat("\\", std::string(1, c), " needs ", digits, " hex digits"));
          }
          v = v * 16 + HexValue(Peek());
          ++pos_;
        }
        if (v > pattern::kMaxCodepoint) return Error(at, "code point above U+10FFFF");
        if (v >= 0xD800 && v <= 0xDFFF) {
          return Error(at, "surrogate code point (not valid in UTF-8)");
        }
        return static_cast<uint32_t>(v);
      }
      default:
        if (static_cast<uint8_t>(c) < 0x80 && c > ' ' && c != 0x7f &&
            !(IsNameChar(c) && c != '-' && c != '_')) {
          return static_cast<uint32_t>(c);  // \" \\ \[ \] \- \^ ... escape themselves
        }
        return Error(at, absl::StrCat("unknown escape \\", std::string(1, c)));
    }
  }

  absl::StatusOr<Node> ParseString() {
    const size_t open = pos_;
    ++pos_;
    std::string bytes;
    while (true) {
      if (AtEnd()) return Error(open, "unterminated string (missing \")");
      if (Peek() == '\n') return Error(open, "newline inside a string (write \\n)");
      if (Peek() == '"') break;
      absl::StatusOr<uint32_t> cp = ParseChar();
      if (!cp.ok()) return cp.status();
      tokenizer::AppendUtf8(*cp, bytes);
    }
    ++pos_;
    return Node::Literal(std::move(bytes));
  }

  absl::StatusOr<Node> ParseClass() {
    const size_t open = pos_;
    ++pos_;
    bool negate = false;
    if (Peek() == '^') {
      negate = true;
      ++pos_;
    }
    std::vector<CodepointRange> ranges;
    while (true) {
      if (AtEnd()) return Error(open, "unterminated character class (missing ])");
      if (Peek() == ']') break;
      const size_t item_at = pos_;
      absl::StatusOr<uint32_t> lo = ParseChar();
      if (!lo.ok()) return lo.status();
      uint32_t hi = *lo;
      if (Peek() == '-' && Peek(1) != ']' && pos_ + 1 < text_.size()) {
        ++pos_;
        absl::StatusOr<uint32_t> end = ParseChar();
        if (!end.ok()) return end.status();
        if (*end < *lo) return Error(item_at, "range out of order");
        hi = *end;
      }
      ranges.push_back({*lo, hi});
    }
    ++pos_;
    ranges = pattern::NormalizeRanges(ranges);
    if (negate) ranges = pattern::ComplementRanges(ranges);
    if (ranges.empty()) return Error(open, "character class matches no character");
    return Node::Class(ranges);
  }

  // Every rule reachable from the root must be able to finish (derive some finite string);
  // reported here with its line:column rather than by GrammarBuilder::Finish.
  absl::Status CheckProductive(int32_t root) {
    std::vector<bool> productive(rules_.size(), false);
    bool changed = true;
    while (changed) {
      changed = false;
      for (size_t i = 0; i < rules_.size(); ++i) {
        if (!productive[i] && Productive(rules_[i].body, productive)) {
          productive[i] = true;
          changed = true;
        }
      }
    }
    // Report a rule on a cycle of never-finishing rules (the cause, e.g. recursion without a base
    // case) rather than the root that merely uses it: from an unproductive reachable rule, follow
    // unproductive references until a rule repeats.
    std::vector<bool> seen(rules_.size(), false);
    std::vector<int32_t> stack = {root};
    seen[root] = true;
    int32_t bad = -1;
    while (!stack.empty() && bad < 0) {
      const int32_t r = stack.back();
      stack.pop_back();
      if (!productive[r]) bad = r;
      CollectRefs(rules_[r].body, [&](int32_t ref) {
        if (!seen[ref]) {
          seen[ref] = true;
          stack.push_back(ref);
        }
      });
    }
    if (bad < 0) return absl::OkStatus();
    std::vector<bool> on_path(rules_.size(), false);
    while (!on_path[bad]) {
      on_path[bad] = true;
      int32_t next = -1;
      CollectRefs(rules_[bad].body, [&](int32_t ref) {
        if (next < 0 && !productive[ref]) next = ref;
      });
      if (next < 0) break;  // cannot happen: an unproductive body needs an unproductive rule
      bad = next;
    }
    return Error(rules_[bad].def_pos,
                 absl::StrCat("rule \"", rules_[bad].name,
                              "\" can never finish (every alternative needs a rule that never "
                              "finishes, e.g. itself, without a base case)"));
  }

  static bool Productive(const Node& n, const std::vector<bool>& productive) {
    switch (n.kind) {
      case Node::Kind::kNothing:
        return false;
      case Node::Kind::kRuleRef:
        return productive[n.rule];
      case Node::Kind::kSeq:
        for (const Node& c : n.children) {
          if (!Productive(c, productive)) return false;
        }
        return true;
      case Node::Kind::kAlt:
        for (const Node& c : n.children) {
          if (Productive(c, productive)) return true;
        }
        return false;
      case Node::Kind::kRepeat:
        return n.min == 0 || Productive(n.children[0], productive);
      default:
        return true;
    }
  }

  template <typename F>
  static void CollectRefs(const Node& n, F&& f) {
    if (n.kind == Node::Kind::kRuleRef) f(n.rule);
    for (const Node& c : n.children) CollectRefs(c, f);
  }

  std::string_view text_;
  size_t pos_ = 0;
  GrammarBuilder builder_;
  std::vector<RuleInfo> rules_;
  absl::flat_hash_map<std::string, int32_t> index_;
};

}  // namespace

absl::StatusOr<Grammar> CompileEbnf(std::string_view text) { return EbnfParser(text).Compile(); }

absl::StatusOr<Grammar> ChoiceGrammar(const std::vector<std::string>& choices) {
  if (choices.empty()) {
    return absl::InvalidArgumentError("choice: the list of choices is empty");
  }
  GrammarBuilder builder;
  const int32_t root = builder.AddRule("root");
  absl::flat_hash_set<std::string> seen;
  for (const std::string& choice : choices) {
    if (!seen.insert(choice).second) continue;  // a duplicate adds nothing to the language
    Alternative alt;
    builder.AppendLiteral(choice, &alt);
    builder.AddAlternative(root, std::move(alt));
  }
  return std::move(builder).Finish(root);
}

}  // namespace muse::structured
