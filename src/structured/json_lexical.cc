#include "src/structured/json_lexical.h"

#include <algorithm>
#include <map>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "src/tokenizer/utf8.h"

namespace muse::structured {

namespace {

// Bytes a JSON string can only carry escaped.
bool NeedsEscape(uint32_t cp) { return cp < 0x20 || cp == '"' || cp == '\\'; }

// The short escape letter of a control character, or 0.
char ShortEscape(uint32_t cp) {
  switch (cp) {
    case '\b':
      return 'b';
    case '\f':
      return 'f';
    case '\n':
      return 'n';
    case '\r':
      return 'r';
    case '\t':
      return 't';
    default:
      return 0;
  }
}

ByteSet Chars(std::string_view chars) {
  ByteSet s;
  for (char c : chars) s.Add(static_cast<uint8_t>(c));
  return s;
}

ByteSet HexDigits() {
  ByteSet s = ByteSet::Range('0', '9');
  s.AddRange('a', 'f');
  s.AddRange('A', 'F');
  return s;
}

// Both cases of hex digit `v`.
ByteSet HexDigit(uint32_t v) {
  const char* const kHex = "0123456789abcdef";
  ByteSet s = ByteSet::Single(static_cast<uint8_t>(kHex[v]));
  if (v >= 10) s.Add(static_cast<uint8_t>(kHex[v] - 'a' + 'A'));
  return s;
}

}  // namespace

JsonLexicon::JsonLexicon(GrammarBuilder* builder, bool compact, int max_whitespace)
    : b_(builder), compact_(compact || max_whitespace <= 0), max_ws_(max_whitespace) {}

Symbol JsonLexicon::Seq(Alternative alt, std::string_view name) {
  return b_->Choice({std::move(alt)}, name);
}

void JsonLexicon::AppendWs(Alternative* alt) {
  if (compact_) return;
  if (!ws_) ws_ = b_->Repeat(b_->Bytes(Chars(" \n\t")), 0, max_ws_);
  alt->push_back(*ws_);
}

void JsonLexicon::AppendComma(Alternative* alt) {
  AppendWs(alt);
  alt->push_back(b_->Byte(','));
  AppendWs(alt);
}

void JsonLexicon::AppendColon(Alternative* alt) {
  AppendWs(alt);
  alt->push_back(b_->Byte(':'));
  AppendWs(alt);
}

Symbol JsonLexicon::Comma() {
  if (compact_) return b_->Byte(',');
  if (!comma_) {
    Alternative alt;
    AppendComma(&alt);
    comma_ = Seq(std::move(alt), "comma");
  }
  return *comma_;
}

Symbol JsonLexicon::AnyValue() {
  if (value_) return *value_;
  const int32_t value = b_->AddRule("value");
  value_ = Symbol::Rule(value);
  // object ::= "{" ws "}" | "{" ws member ("," member)* ws "}"
  Alternative member{AnyString()};
  AppendColon(&member);
  member.push_back(*value_);
  const Symbol members = b_->SeparatedList(Seq(std::move(member), "member"), Comma(), 1, -1);
  const int32_t object = b_->AddRule("object");
  const int32_t array = b_->AddRule("array");
  for (auto [rule, open, close, items] :
       {std::tuple{object, '{', '}', members},
        std::tuple{array, '[', ']', b_->SeparatedList(*value_, Comma(), 1, -1)}}) {
    Alternative empty{b_->Byte(open)};
    AppendWs(&empty);
    empty.push_back(b_->Byte(close));
    b_->AddAlternative(rule, std::move(empty));
    Alternative full{b_->Byte(open)};
    AppendWs(&full);
    full.push_back(items);
    AppendWs(&full);
    full.push_back(b_->Byte(close));
    b_->AddAlternative(rule, std::move(full));
  }
  object_ = Symbol::Rule(object);
  for (Symbol s : {*object_, Symbol::Rule(array), AnyString(), Number(), Boolean(), Null()}) {
    b_->AddAlternative(value, {s});
  }
  return *value_;
}

Symbol JsonLexicon::AnyObject() {
  AnyValue();
  return *object_;
}

Symbol JsonLexicon::Boolean() {
  if (!boolean_) {
    Alternative t, f;
    b_->AppendLiteral("true", &t);
    b_->AppendLiteral("false", &f);
    boolean_ = b_->Choice({std::move(t), std::move(f)}, "boolean");
  }
  return *boolean_;
}

Symbol JsonLexicon::Null() {
  if (!null_) null_ = b_->Literal("null");
  return *null_;
}

Symbol JsonLexicon::Number() {
  if (number_) return *number_;
  const Symbol digit = b_->Bytes(ByteSet::Range('0', '9'));
  const Symbol digits = b_->Plus(digit);
  const Symbol int_part = b_->Choice(
      {{b_->Byte('0')}, {b_->Bytes(ByteSet::Range('1', '9')), b_->Star(digit)}}, "int_part");
  const Symbol frac = b_->Optional(Seq({b_->Byte('.'), digits}, "fraction"));
  const Symbol exp = b_->Optional(
      Seq({b_->Bytes(Chars("eE")), b_->Optional(b_->Bytes(Chars("+-"))), digits}, "exponent"));
  number_ = b_->Choice({{int_part, frac, exp}, {b_->Byte('-'), int_part, frac, exp}}, "number");
  return *number_;
}

Symbol JsonLexicon::RawChar() {
  if (!raw_char_) {
    // Never fails: the set is most of Unicode.
    raw_char_ = b_->Utf8Class({{0x20, 0x21}, {0x23, 0x5B}, {0x5D, 0x10FFFF}}).value();
  }
  return *raw_char_;
}

Symbol JsonLexicon::AnyChar() {
  if (any_char_) return *any_char_;
  const Symbol bs = b_->Byte('\\');
  const Symbol u = b_->Byte('u');
  const Symbol hex = b_->Bytes(HexDigits());
  ByteSet not_d = ByteSet::Range('0', '9');  // a first hex digit that starts no surrogate
  not_d.AddRange('a', 'c');
  not_d.AddRange('e', 'f');
  not_d.AddRange('A', 'C');
  not_d.AddRange('E', 'F');
  const Symbol d = b_->Bytes(Chars("dD"));
  any_char_ = b_->Choice(
      {
          {RawChar()},
          {bs, b_->Bytes(Chars("\"\\/bfnrt"))},
          {bs, u, b_->Bytes(not_d), hex, hex, hex},
          {bs, u, d, b_->Bytes(ByteSet::Range('0', '7')), hex, hex},
          // A surrogate pair: one code point.
          {bs, u, d, b_->Bytes(Chars("89abAB")), hex, hex, bs, u, d, b_->Bytes(Chars("cdefCDEF")),
           hex, hex},
      },
      "char");
  return *any_char_;
}

Symbol JsonLexicon::CanonicalChar() {
  if (!canonical_char_) {
    const Symbol bs = b_->Byte('\\');
    canonical_char_ = b_->Choice({{RawChar()},
                                  {bs, b_->Bytes(Chars("\"\\bfnrt"))},
                                  {bs, b_->Byte('u'), b_->Byte('0'), b_->Byte('0'),
                                   b_->Bytes(Chars("01")), b_->Bytes(HexDigits())}},
                                 "text_char");
  }
  return *canonical_char_;
}

void JsonLexicon::AppendCanonical(uint32_t cp, std::vector<Alternative>* alts) {
  if (!NeedsEscape(cp)) {
    std::string utf8;
    tokenizer::AppendUtf8(cp, utf8);
    Alternative alt;
    b_->AppendLiteral(utf8, &alt);
    alts->push_back(std::move(alt));
    return;
  }
  if (cp == '"' || cp == '\\') {
    alts->push_back({b_->Byte('\\'), b_->Byte(static_cast<uint8_t>(cp))});
    return;
  }
  if (const char e = ShortEscape(cp)) alts->push_back({b_->Byte('\\'), b_->Byte(e)});
  alts->push_back({b_->Byte('\\'), b_->Byte('u'), b_->Byte('0'), b_->Byte('0'),
                   b_->Bytes(HexDigit(cp >> 4)), b_->Bytes(HexDigit(cp & 15))});
}

absl::StatusOr<Symbol> JsonLexicon::CanonicalCharExcept(const std::vector<uint32_t>& excluded) {
  std::vector<CodepointRange> not_raw{{0x00, 0x1F}, {'"', '"'}, {'\\', '\\'}};
  bool excludes_special = false;
  for (uint32_t cp : excluded) {
    not_raw.push_back({cp, cp});
    excludes_special |= NeedsEscape(cp);
  }
  absl::StatusOr<Symbol> raw = b_->Utf8Class(std::move(not_raw), /*negate=*/true);
  if (!raw.ok()) return raw.status();
  std::vector<Alternative> alts{{*raw}};
  if (!excludes_special) {
    const Symbol bs = b_->Byte('\\');
    alts.push_back({bs, b_->Bytes(Chars("\"\\bfnrt"))});
    alts.push_back({bs, b_->Byte('u'), b_->Byte('0'), b_->Byte('0'), b_->Bytes(Chars("01")),
                    b_->Bytes(HexDigits())});
  } else {
    for (uint32_t cp = 0; cp <= '\\'; ++cp) {
      if (NeedsEscape(cp) && !std::binary_search(excluded.begin(), excluded.end(), cp)) {
        AppendCanonical(cp, &alts);
      }
    }
  }
  return b_->Choice(std::move(alts), "text_char_except");
}

Symbol JsonLexicon::AnyString() {
  if (!string_) {
    string_ = Seq({b_->Byte('"'), b_->Star(AnyChar()), b_->Byte('"')}, "string");
  }
  return *string_;
}

Symbol JsonLexicon::StringOfLength(int min, int max) {
  if (min <= 0 && max < 0) return AnyString();
  return Seq({b_->Byte('"'), b_->Repeat(AnyChar(), min, max), b_->Byte('"')},
             absl::StrCat("string_", min, "_", max));
}

Symbol JsonLexicon::EscapedByteSet(const ByteSet& set) {
  auto it = escaped_sets_.find(set.bits());
  if (it != escaped_sets_.end()) return it->second;
  ByteSet plain;
  std::vector<uint32_t> special;
  for (int b = 0; b < 256; ++b) {
    if (!set.Has(b)) continue;
    if (NeedsEscape(b)) {
      special.push_back(b);
    } else {
      plain.Add(b);
    }
  }
  Symbol s = b_->Bytes(set);
  if (!special.empty()) {
    std::vector<Alternative> alts;
    if (!plain.empty()) alts.push_back({b_->Bytes(plain)});
    for (uint32_t cp : special) AppendCanonical(cp, &alts);
    s = b_->Choice(std::move(alts), "escaped");
  }
  escaped_sets_.emplace(set.bits(), s);
  return s;
}

absl::StatusOr<Symbol> JsonLexicon::StringMatching(const Grammar& text, bool any_prefix,
                                                   bool any_suffix) {
  // Copy the text grammar's rules, every byte that JSON must escape replaced by its escapes.
  std::vector<int32_t> rule(text.rules.size());
  for (size_t r = 0; r < text.rules.size(); ++r) {
    rule[r] = b_->AddRule(absl::StrCat("pattern_", text.rules[r].name));
  }
  for (size_t r = 0; r < text.rules.size(); ++r) {
    for (const Alternative& alt : text.rules[r].alternatives) {
      Alternative out;
      for (const Symbol& s : alt) {
        out.push_back(s.is_rule() ? Symbol::Rule(rule[s.index])
                                  : EscapedByteSet(text.byte_sets[s.index]));
      }
      b_->AddAlternative(rule[r], std::move(out));
    }
  }
  if (!canonical_star_) canonical_star_ = b_->Star(CanonicalChar());
  Alternative alt;
  alt.reserve(5);
  alt.push_back(b_->Byte('"'));
  if (any_prefix) alt.push_back(*canonical_star_);
  alt.push_back(Symbol::Rule(rule[text.root]));
  if (any_suffix) alt.push_back(*canonical_star_);
  alt.push_back(b_->Byte('"'));
  return Seq(std::move(alt), "pattern_string");
}

absl::StatusOr<Symbol> JsonLexicon::KeyNotIn(const std::vector<std::string>& names) {
  if (names.empty()) return AnyString();
  // A trie over the names' code points; rule K(v) derives every text that, read from node v,
  // does not end exactly on a name.
  struct Node {
    std::map<uint32_t, int> children;
    bool terminal = false;
  };
  std::vector<Node> trie(1);
  for (const std::string& name : names) {
    int v = 0;
    for (size_t i = 0; i < name.size();) {
      const uint32_t cp = tokenizer::DecodeUtf8(name, i);
      auto [it, inserted] = trie[v].children.emplace(cp, static_cast<int>(trie.size()));
      if (inserted) trie.emplace_back();
      v = it->second;
    }
    trie[v].terminal = true;
  }
  if (!canonical_star_) canonical_star_ = b_->Star(CanonicalChar());
  std::vector<int32_t> rules(trie.size());
  for (size_t v = 0; v < trie.size(); ++v) rules[v] = b_->AddRule("key_other");
  for (size_t v = 0; v < trie.size(); ++v) {
    std::vector<uint32_t> next;
    for (const auto& [cp, child] : trie[v].children) {
      std::vector<Alternative> spellings;
      AppendCanonical(cp, &spellings);
      b_->AddAlternative(
          rules[v], {b_->Choice(std::move(spellings), "key_char"), Symbol::Rule(rules[child])});
      next.push_back(cp);
    }
    absl::StatusOr<Symbol> other = CanonicalCharExcept(next);
    if (!other.ok()) return other.status();
    b_->AddAlternative(rules[v], {*other, *canonical_star_});
    if (!trie[v].terminal) b_->AddAlternative(rules[v], {});
  }
  return Seq({b_->Byte('"'), Symbol::Rule(rules[0]), b_->Byte('"')}, "additional_key");
}

Symbol JsonLexicon::Digits(char lo, char hi) {
  return b_->Bytes(ByteSet::Range(static_cast<uint8_t>(lo), static_cast<uint8_t>(hi)));
}

void JsonLexicon::AppendDigitRange(std::string_view lo, std::string_view hi, Alternative* alt) {
  const size_t n = lo.size();
  if (lo == hi) {
    b_->AppendLiteral(lo, alt);
    return;
  }
  if (lo[0] == hi[0]) {
    alt->push_back(b_->Byte(static_cast<uint8_t>(lo[0])));
    AppendDigitRange(lo.substr(1), hi.substr(1), alt);
    return;
  }
  const std::string_view lo_rest = lo.substr(1), hi_rest = hi.substr(1);
  const bool lo_zeros = lo_rest.find_first_not_of('0') == std::string_view::npos;
  const bool hi_nines = hi_rest.find_first_not_of('9') == std::string_view::npos;
  if (lo_zeros && hi_nines) {
    alt->push_back(Digits(lo[0], hi[0]));
    for (size_t i = 1; i < n; ++i) alt->push_back(Digits('0', '9'));
    return;
  }
  // lo[0] followed by [lo_rest, 9..9], the digits strictly between with any tail, hi[0]
  // followed by [0..0, hi_rest].
  std::vector<Alternative> alts;
  if (!lo_zeros) {
    Alternative a{b_->Byte(static_cast<uint8_t>(lo[0]))};
    AppendDigitRange(lo_rest, std::string(n - 1, '9'), &a);
    alts.push_back(std::move(a));
  }
  const char mid_lo = lo_zeros ? lo[0] : static_cast<char>(lo[0] + 1);
  const char mid_hi = hi_nines ? hi[0] : static_cast<char>(hi[0] - 1);
  if (mid_lo <= mid_hi) {
    Alternative a{Digits(mid_lo, mid_hi)};
    for (size_t i = 1; i < n; ++i) a.push_back(Digits('0', '9'));
    alts.push_back(std::move(a));
  }
  if (!hi_nines) {
    Alternative a{b_->Byte(static_cast<uint8_t>(hi[0]))};
    AppendDigitRange(std::string(n - 1, '0'), hi_rest, &a);
    alts.push_back(std::move(a));
  }
  alt->push_back(b_->Choice(std::move(alts), "digits"));
}

Symbol JsonLexicon::Magnitude(uint64_t lo, std::optional<uint64_t> hi) {
  const std::string lo_s = std::to_string(lo);
  const std::string hi_s = hi ? std::to_string(*hi) : "";
  const size_t last = hi ? hi_s.size() : lo_s.size();
  std::vector<Alternative> alts;
  for (size_t len = lo_s.size(); len <= last; ++len) {
    const std::string a = len == lo_s.size() ? lo_s : absl::StrCat("1", std::string(len - 1, '0'));
    const std::string b = hi && len == hi_s.size() ? hi_s : std::string(len, '9');
    if (a > b) continue;
    Alternative alt;
    AppendDigitRange(a, b, &alt);
    alts.push_back(std::move(alt));
  }
  if (!hi) {
    // Longer than lo: any digits without a leading zero.
    Alternative alt{Digits('1', '9')};
    for (size_t i = 0; i < lo_s.size(); ++i) alt.push_back(Digits('0', '9'));
    alt.push_back(b_->Star(Digits('0', '9')));
    alts.push_back(std::move(alt));
  }
  return b_->Choice(std::move(alts), "magnitude");
}

std::optional<Symbol> JsonLexicon::IntegerRange(std::optional<int64_t> lo,
                                                std::optional<int64_t> hi) {
  if (lo && hi && *lo > *hi) return std::nullopt;
  std::vector<Alternative> alts;
  if (!hi || *hi >= 0) {
    const uint64_t from = lo && *lo > 0 ? static_cast<uint64_t>(*lo) : 0;
    std::optional<uint64_t> to;
    if (hi) to = static_cast<uint64_t>(*hi);
    alts.push_back({Magnitude(from, to)});
  }
  if (!lo || *lo < 0) {
    // -x for x in [max(1, -hi), -lo]; -INT64_MIN computed without overflow.
    const uint64_t from = hi && *hi < 0 ? static_cast<uint64_t>(-(*hi + 1)) + 1 : 1;
    std::optional<uint64_t> to;
    if (lo) to = static_cast<uint64_t>(-(*lo + 1)) + 1;
    alts.push_back({b_->Byte('-'), Magnitude(from, to)});
  }
  return b_->Choice(std::move(alts), "integer");
}

Symbol JsonLexicon::Date() {
  if (date_) return *date_;
  const Symbol digit = Digits('0', '9');
  auto lit = [&](std::string_view s) {
    Alternative a;
    b_->AppendLiteral(s, &a);
    return a;
  };
  auto cat = [](Alternative a, const Alternative& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  const Symbol d28 = b_->Choice({{b_->Byte('0'), Digits('1', '9')},
                                 {b_->Byte('1'), digit},
                                 {b_->Byte('2'), Digits('0', '8')}},
                                "day28");
  const Symbol d30 = b_->Choice({{d28}, lit("29"), lit("30")}, "day30");
  const Symbol d31 = b_->Choice({{d30}, lit("31")}, "day31");
  const Symbol m31 = b_->Choice(
      {{b_->Byte('0'), b_->Bytes(Chars("13578"))}, {b_->Byte('1'), b_->Bytes(Chars("02"))}},
      "month31");
  const Symbol m30 = b_->Choice({{b_->Byte('0'), b_->Bytes(Chars("469"))}, lit("11")}, "month30");
  const Symbol month_day = b_->Choice(
      {{m31, b_->Byte('-'), d31}, {m30, b_->Byte('-'), d30}, cat(lit("02-"), {d28})}, "month_day");
  // Leap years (Gregorian): divisible by 4, centuries only when divisible by 400.
  const Alternative by4_not0{b_->Choice({{b_->Byte('0'), b_->Bytes(Chars("48"))},
                                         {b_->Bytes(Chars("2468")), b_->Bytes(Chars("048"))},
                                         {b_->Bytes(Chars("13579")), b_->Bytes(Chars("26"))}},
                                        "by4")};
  const Alternative by4{b_->Choice({by4_not0, lit("00")}, "by4_or_0")};
  const Symbol leap = b_->Choice({cat({digit, digit}, by4_not0), cat(by4, lit("00"))}, "leap_year");
  date_ = b_->Choice(
      {{digit, digit, digit, digit, b_->Byte('-'), month_day}, cat({leap}, lit("-02-29"))}, "date");
  return *date_;
}

Symbol JsonLexicon::Time() {
  if (time_) return *time_;
  const Symbol digit = Digits('0', '9');
  const Symbol hour =
      b_->Choice({{Digits('0', '1'), digit}, {b_->Byte('2'), Digits('0', '3')}}, "hour");
  const Symbol minute = Seq({Digits('0', '5'), digit}, "minute");
  // 60: a leap second (RFC 3339 allows it in the syntax).
  const Symbol second =
      b_->Choice({{Digits('0', '5'), digit}, {b_->Byte('6'), b_->Byte('0')}}, "second");
  const Symbol frac = b_->Optional(Seq({b_->Byte('.'), b_->Plus(digit)}, "secfrac"));
  const Symbol offset = b_->Choice(
      {{b_->Bytes(Chars("zZ"))}, {b_->Bytes(Chars("+-")), hour, b_->Byte(':'), minute}}, "offset");
  time_ = Seq({hour, b_->Byte(':'), minute, b_->Byte(':'), second, frac, offset}, "time");
  return *time_;
}

absl::StatusOr<Symbol> JsonLexicon::Format(std::string_view name) {
  const Symbol quote = b_->Byte('"');
  if (name == "date") return Seq({quote, Date(), quote}, "date_string");
  if (name == "time") return Seq({quote, Time(), quote}, "time_string");
  if (name == "date-time") {
    return Seq({quote, Date(), b_->Bytes(Chars("tT")), Time(), quote}, "date_time_string");
  }
  if (name == "uuid") {
    const Symbol hex = b_->Bytes(HexDigits());
    Alternative alt{quote};
    for (int group : {8, 4, 4, 4, 12}) {
      if (alt.size() > 1) alt.push_back(b_->Byte('-'));
      for (int i = 0; i < group; ++i) alt.push_back(hex);
    }
    alt.push_back(quote);
    return Seq(std::move(alt), "uuid_string");
  }
  if (name == "email") {
    // A dot-atom local part (RFC 5322, no quoted strings) "@" a host name (no address literals).
    ByteSet atext = ByteSet::Range('a', 'z');
    atext.AddRange('A', 'Z');
    atext.AddRange('0', '9');
    ByteSet alnum = atext;
    atext |= Chars("!#$%&'*+/=?^_`{|}~-");
    ByteSet alnum_dash = alnum;
    alnum_dash.Add('-');
    const Symbol atom = b_->Plus(b_->Bytes(atext));
    const Symbol local = b_->SeparatedList(atom, b_->Byte('.'), 1, -1);
    const Symbol label = b_->Choice(
        {{b_->Bytes(alnum)}, {b_->Bytes(alnum), b_->Star(b_->Bytes(alnum_dash)), b_->Bytes(alnum)}},
        "label");
    const Symbol host = b_->SeparatedList(label, b_->Byte('.'), 1, -1);
    return Seq({quote, local, b_->Byte('@'), host, quote}, "email_string");
  }
  return absl::NotFoundError(absl::StrCat("unknown format \"", std::string(name), "\""));
}

}  // namespace muse::structured
