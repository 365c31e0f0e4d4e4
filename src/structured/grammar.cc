#include "src/structured/grammar.h"

#include <algorithm>
#include <bit>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace muse::structured {

// ---- ByteSet ----

ByteSet ByteSet::Single(uint8_t b) {
  ByteSet s;
  s.Add(b);
  return s;
}

ByteSet ByteSet::Range(uint8_t lo, uint8_t hi) {
  ByteSet s;
  s.AddRange(lo, hi);
  return s;
}

ByteSet ByteSet::All() { return ByteSet().Complement(); }

void ByteSet::AddRange(uint8_t lo, uint8_t hi) {
  for (int b = lo; b <= hi; ++b) Add(static_cast<uint8_t>(b));
}

ByteSet& ByteSet::operator|=(const ByteSet& o) {
  for (int i = 0; i < 4; ++i) bits_[i] |= o.bits_[i];
  return *this;
}

ByteSet ByteSet::Complement() const {
  ByteSet s;
  for (int i = 0; i < 4; ++i) s.bits_[i] = ~bits_[i];
  return s;
}

bool ByteSet::empty() const { return (bits_[0] | bits_[1] | bits_[2] | bits_[3]) == 0; }

int ByteSet::size() const {
  int n = 0;
  for (uint64_t w : bits_) n += std::popcount(w);
  return n;
}

// ---- ToString ----

namespace {

bool Printable(int b) { return b >= 0x20 && b < 0x7f; }

std::string ByteText(int b, bool in_class) {
  switch (b) {
    case '\n':
      return "\\n";
    case '\t':
      return "\\t";
    case '\r':
      return "\\r";
    case '\\':
      return "\\\\";
    default:
      break;
  }
  if (!in_class && b == '"') return "\\\"";
  if (in_class && (b == ']' || b == '-' || b == '^')) return absl::StrCat("\\", std::string(1, b));
  if (Printable(b)) return std::string(1, static_cast<char>(b));
  return absl::StrFormat("\\x%02X", b);
}

std::string SetText(const ByteSet& s) {
  if (s.size() == 256) return "[\\x00-\\xFF]";
  std::string out = "[";
  for (int b = 0; b < 256;) {
    if (!s.Has(static_cast<uint8_t>(b))) {
      ++b;
      continue;
    }
    int e = b;
    while (e + 1 < 256 && s.Has(static_cast<uint8_t>(e + 1))) ++e;
    out += ByteText(b, true);
    if (e > b) out += absl::StrCat(e > b + 1 ? "-" : "", ByteText(e, true));
    b = e + 1;
  }
  return out + "]";
}

int SingleByte(const ByteSet& s) {
  if (s.size() != 1) return -1;
  for (int b = 0; b < 256; ++b) {
    if (s.Has(static_cast<uint8_t>(b))) return b;
  }
  return -1;
}

}  // namespace

std::string Grammar::ToString() const {
  std::vector<int32_t> order;
  order.push_back(root);
  for (int32_t r = 0; r < static_cast<int32_t>(rules.size()); ++r) {
    if (r != root) order.push_back(r);
  }
  std::string out;
  for (int32_t r : order) {
    absl::StrAppend(&out, rules[r].name, " ::=");
    bool first_alt = true;
    for (const Alternative& alt : rules[r].alternatives) {
      absl::StrAppend(&out, first_alt ? " " : " | ");
      first_alt = false;
      if (alt.empty()) {
        out += "\"\"";
        continue;
      }
      bool first = true;
      std::string literal;
      auto flush = [&] {
        if (literal.empty()) return;
        absl::StrAppend(&out, first ? "" : " ", "\"", literal, "\"");
        first = false;
        literal.clear();
      };
      for (const Symbol& s : alt) {
        if (!s.is_rule()) {
          const int b = SingleByte(byte_sets[s.index]);
          if (b >= 0) {
            literal += ByteText(b, false);
            continue;
          }
        }
        flush();
        absl::StrAppend(&out, first ? "" : " ",
                        s.is_rule() ? rules[s.index].name : SetText(byte_sets[s.index]));
        first = false;
      }
      flush();
    }
    out += "\n";
  }
  return out;
}

// ---- GrammarBuilder ----

int32_t GrammarBuilder::AddRule(std::string_view name) {
  std::string unique(name.empty() ? "rule" : name);
  if (FindRule(unique) >= 0) {
    for (int n = 1;; ++n) {
      std::string candidate = absl::StrCat(unique, "_", n);
      if (FindRule(candidate) < 0) {
        unique = std::move(candidate);
        break;
      }
    }
  }
  names_.emplace(unique, static_cast<int32_t>(rules_.size()));
  rules_.push_back(Rule{std::move(unique), {}});
  defined_.push_back(false);
  return static_cast<int32_t>(rules_.size()) - 1;
}

int32_t GrammarBuilder::FindRule(std::string_view name) const {
  auto it = names_.find(absl::string_view(name.data(), name.size()));
  return it == names_.end() ? -1 : it->second;
}

void GrammarBuilder::AddAlternative(int32_t rule, Alternative alt) {
  rules_[rule].alternatives.push_back(std::move(alt));
  defined_[rule] = true;
}

Symbol GrammarBuilder::Bytes(const ByteSet& set) {
  for (size_t i = 0; i < byte_sets_.size(); ++i) {
    if (byte_sets_[i] == set) return Symbol::Bytes(static_cast<int32_t>(i));
  }
  byte_sets_.push_back(set);
  return Symbol::Bytes(static_cast<int32_t>(byte_sets_.size()) - 1);
}

void GrammarBuilder::AppendLiteral(std::string_view text, Alternative* alt) {
  for (char c : text) alt->push_back(Byte(static_cast<uint8_t>(c)));
}

Symbol GrammarBuilder::Literal(std::string_view text) {
  auto it = literals_.find(absl::string_view(text.data(), text.size()));
  if (it != literals_.end()) return Symbol::Rule(it->second);
  const int32_t r = AddRule("literal");
  Alternative alt;
  AppendLiteral(text, &alt);
  AddAlternative(r, std::move(alt));
  literals_.emplace(std::string(text), r);
  return Symbol::Rule(r);
}

namespace {

constexpr uint32_t kMaxCodepoint = 0x10FFFF;

// Sorted, merged, surrogate-free ranges (optionally complemented within U+0000..U+10FFFF).
std::vector<CodepointRange> Normalize(const std::vector<CodepointRange>& ranges, bool negate) {
  std::vector<CodepointRange> in;
  for (CodepointRange r : ranges) {
    if (r.lo > r.hi || r.lo > kMaxCodepoint) continue;
    r.hi = std::min(r.hi, kMaxCodepoint);
    in.push_back(r);
  }
  std::sort(in.begin(), in.end(),
            [](const CodepointRange& a, const CodepointRange& b) { return a.lo < b.lo; });
  std::vector<CodepointRange> merged;
  for (const CodepointRange& r : in) {
    if (!merged.empty() && r.lo <= merged.back().hi + 1) {
      merged.back().hi = std::max(merged.back().hi, r.hi);
    } else {
      merged.push_back(r);
    }
  }
  if (negate) {
    std::vector<CodepointRange> comp;
    uint32_t next = 0;
    for (const CodepointRange& r : merged) {
      if (r.lo > next) comp.push_back({next, r.lo - 1});
      next = r.hi + 1;
    }
    if (next <= kMaxCodepoint) comp.push_back({next, kMaxCodepoint});
    merged = std::move(comp);
  }
  // Remove the surrogates D800..DFFF (no UTF-8 encoding).
  std::vector<CodepointRange> out;
  for (const CodepointRange& r : merged) {
    if (r.hi < 0xD800 || r.lo > 0xDFFF) {
      out.push_back(r);
      continue;
    }
    if (r.lo < 0xD800) out.push_back({r.lo, 0xD7FF});
    if (r.hi > 0xDFFF) out.push_back({0xE000, r.hi});
  }
  return out;
}

int Utf8Length(uint32_t cp) { return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4; }

void Encode(uint32_t cp, uint8_t* out) {
  switch (Utf8Length(cp)) {
    case 1:
      out[0] = static_cast<uint8_t>(cp);
      break;
    case 2:
      out[0] = static_cast<uint8_t>(0xC0 | (cp >> 6));
      out[1] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
      break;
    case 3:
      out[0] = static_cast<uint8_t>(0xE0 | (cp >> 12));
      out[1] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
      out[2] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
      break;
    default:
      out[0] = static_cast<uint8_t>(0xF0 | (cp >> 18));
      out[1] = static_cast<uint8_t>(0x80 | ((cp >> 12) & 0x3F));
      out[2] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
      out[3] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
      break;
  }
}

// Splits [lo, hi] into ranges whose UTF-8 encodings are a product of per-byte ranges (the
// classic construction: split where the encoded length changes, then where a continuation byte's
// range is not full), each emitted as a vector of (lo byte, hi byte) pairs.
void SplitUtf8(uint32_t lo, uint32_t hi,
               std::vector<std::vector<std::pair<uint8_t, uint8_t>>>* out) {
  for (uint32_t boundary : {0x7Fu, 0x7FFu, 0xFFFFu}) {
    if (lo <= boundary && hi > boundary) {
      SplitUtf8(lo, boundary, out);
      SplitUtf8(boundary + 1, hi, out);
      return;
    }
  }
  const int len = Utf8Length(lo);
  for (int i = 1; i < len; ++i) {
    const uint32_t max = (uint32_t{1} << (6 * i)) - 1;
    if ((lo & ~max) != (hi & ~max)) {
      if ((lo & max) != 0) {
        SplitUtf8(lo, lo | max, out);
        SplitUtf8((lo | max) + 1, hi, out);
        return;
      }
      if ((hi & max) != max) {
        SplitUtf8(lo, (hi & ~max) - 1, out);
        SplitUtf8(hi & ~max, hi, out);
        return;
      }
    }
  }
  uint8_t a[4];
  uint8_t b[4];
  Encode(lo, a);
  Encode(hi, b);
  std::vector<std::pair<uint8_t, uint8_t>> seq;
  seq.reserve(len);
  for (int i = 0; i < len; ++i) seq.emplace_back(a[i], b[i]);
  out->push_back(std::move(seq));
}

}  // namespace

absl::StatusOr<Symbol> GrammarBuilder::Utf8Class(const std::vector<CodepointRange>& ranges,
                                                 bool negate) {
  const std::vector<CodepointRange> norm = Normalize(ranges, negate);
  if (norm.empty()) {
    return absl::InvalidArgumentError("character class matches no character");
  }
  std::string key;
  for (const CodepointRange& r : norm) absl::StrAppend(&key, r.lo, "-", r.hi, ",");
  auto it = classes_.find(key);
  if (it != classes_.end()) return Symbol::Rule(it->second);

  std::vector<std::vector<std::pair<uint8_t, uint8_t>>> seqs;
  for (const CodepointRange& r : norm) SplitUtf8(r.lo, r.hi, &seqs);
  const int32_t rule = AddRule("char");
  ByteSet ascii;
  for (const auto& seq : seqs) {
    if (seq.size() == 1) {
      ascii.AddRange(seq[0].first, seq[0].second);
      continue;
    }
    Alternative alt;
    for (const auto& [a, b] : seq) alt.push_back(Bytes(ByteSet::Range(a, b)));
    AddAlternative(rule, std::move(alt));
  }
  if (!ascii.empty()) {
    rules_[rule].alternatives.insert(rules_[rule].alternatives.begin(), Alternative{Bytes(ascii)});
    defined_[rule] = true;
  }
  classes_.emplace(std::move(key), rule);
  return Symbol::Rule(rule);
}

Symbol GrammarBuilder::Optional(Symbol s) {
  const int32_t r = AddRule("opt");
  AddAlternative(r, {s});
  AddAlternative(r, {});
  return Symbol::Rule(r);
}

int32_t GrammarBuilder::LeftRecursive(std::string_view name, Symbol s, bool allow_empty) {
  const int32_t r = AddRule(name);
  AddAlternative(r, {Symbol::Rule(r), s});
  AddAlternative(r, allow_empty ? Alternative{} : Alternative{s});
  return r;
}

Symbol GrammarBuilder::Star(Symbol s) {
  const int32_t r = LeftRecursive("star", s, /*allow_empty=*/true);
  loops_.push_back(Loop{s, r, {r}});
  return Symbol::Rule(r);
}

Symbol GrammarBuilder::Plus(Symbol s) {
  const int32_t r = LeftRecursive("plus", s, /*allow_empty=*/false);
  loops_.push_back(Loop{s, r, {r}});
  return Symbol::Rule(r);
}

Symbol GrammarBuilder::Repeat(Symbol s, int min, int max) {
  return CountedList(s, std::nullopt, min, max);
}

Symbol GrammarBuilder::SeparatedList(Symbol item, Symbol sep, int min_items, int max_items) {
  return CountedList(item, sep, min_items, max_items);
}

// Counts in O(log n) rules (a count of 10000 used to cost 10000 rules, and as many Earley items
// when a run starts): P_0 = s, P_i ::= P_(i-1) P_(i-1) derives exactly 2^i copies;
//   exactly m    = the P_i of m's set bits, in sequence;
//   0..n         = P_0? P_1? ... P_(k-1)? [exactly (n - (2^k - 1))]?  with 2^k - 1 <= n
// (the optional blocks spell every count below 2^k in binary; the last block shifts that range up
// to n, so some counts have two derivations, which a recognizer does not mind);
//   min.. (unbounded) = exactly min, then s* (left-recursive).
// Lists put the separator in the repeated unit: item (sep item){min-1, max-1}, or "" when min is 0.
namespace {

struct Powers {
  GrammarBuilder* b;
  std::vector<Symbol> p;  // p[i] derives exactly 2^i copies of p[0]

  Symbol Get(int i) {
    while (static_cast<int>(p.size()) <= i) {
      const Symbol half = p.back();
      const int32_t r = b->AddRule(
          absl::StrCat(b->RuleName(half.is_rule() ? half.index : 0), "_x", int64_t{1} << p.size()));
      b->AddAlternative(r, {half, half});
      p.push_back(Symbol::Rule(r));
    }
    return p[i];
  }
  // Appends the blocks deriving exactly m copies (m >= 0).
  void Exactly(int m, Alternative* alt) {
    for (int i = 30; i >= 0; --i) {
      if ((m >> i) & 1) alt->push_back(Get(i));
    }
  }
  // Appends blocks deriving any count in 0..n (n >= 0).
  void UpTo(int n, Alternative* alt) {
    int k = 0;
    while ((int64_t{2} << k) - 1 <= n) ++k;  // 2^(k+1) - 1 > n >= 2^k - 1
    for (int i = 0; i < k; ++i) alt->push_back(b->Optional(Get(i)));
    const int rest = n - ((1 << k) - 1);
    if (rest > 0) {
      Alternative block;
      Exactly(rest, &block);
      alt->push_back(b->Optional(block.size() == 1 ? block[0] : b->Choice({block}, "block")));
    }
  }
};

}  // namespace

Symbol GrammarBuilder::CountedList(Symbol item, std::optional<Symbol> sep, int min, int max) {
  min = std::max(min, 0);
  const int32_t r = AddRule(sep ? "list" : "repeat");
  if (max >= 0 && max < min) {
    // Nothing can be derived; Finish() reports the rule as one that can never finish.
    AddAlternative(r, {Symbol::Rule(r)});
    return Symbol::Rule(r);
  }
  // The unit each count adds (after the first, for a list).
  Symbol unit = item;
  if (sep) {
    if (min == 0) AddAlternative(r, {});
    if (max == 0) return Symbol::Rule(r);
    unit = Choice({{*sep, item}}, absl::StrCat(RuleName(r), "_next"));
    min = std::max(min, 1) - 1;
    max = max < 0 ? -1 : max - 1;
  }
  const int32_t first_new = num_rules();  // the structure's rules are those made from here on
  Powers powers{this, {unit}};
  Alternative alt;
  if (sep) alt.push_back(item);
  powers.Exactly(min, &alt);
  if (max < 0) {
    alt.push_back(Symbol::Rule(LeftRecursive("star", unit, /*allow_empty=*/true)));
  } else {
    powers.UpTo(max - min, &alt);
  }
  AddAlternative(r, std::move(alt));
  Loop loop{unit, r, {r}};
  for (int32_t x = first_new; x < num_rules(); ++x) loop.parts.push_back(x);
  loops_.push_back(std::move(loop));
  return Symbol::Rule(r);
}

Symbol GrammarBuilder::Choice(std::vector<Alternative> alternatives, std::string_view name) {
  const int32_t r = AddRule(name);
  for (Alternative& a : alternatives) AddAlternative(r, std::move(a));
  return Symbol::Rule(r);
}

absl::StatusOr<Grammar> GrammarBuilder::Finish(int32_t root) && {
  const int32_t n = static_cast<int32_t>(rules_.size());
  if (root < 0 || root >= n) return absl::InvalidArgumentError("the grammar has no root rule");
  // Reachable rules, in discovery order from the root.
  std::vector<int32_t> order{root};
  std::vector<bool> reached(n, false);
  reached[root] = true;
  for (size_t i = 0; i < order.size(); ++i) {
    const int32_t r = order[i];
    if (!defined_[r]) {
      return absl::InvalidArgumentError(
          absl::StrCat("rule \"", rules_[r].name, "\" is used but never defined"));
    }
    for (const Alternative& alt : rules_[r].alternatives) {
      for (const Symbol& s : alt) {
        if (!s.is_rule()) continue;
        if (s.index < 0 || s.index >= n) {
          return absl::InvalidArgumentError(
              absl::StrCat("rule \"", rules_[r].name, "\" refers to a missing rule"));
        }
        if (!reached[s.index]) {
          reached[s.index] = true;
          order.push_back(s.index);
        }
      }
    }
  }
  // Productive rules (derive at least one finite byte string): fixpoint.
  std::vector<bool> productive(n, false);
  for (bool changed = true; changed;) {
    changed = false;
    for (int32_t r : order) {
      if (productive[r]) continue;
      for (const Alternative& alt : rules_[r].alternatives) {
        const bool ok = std::all_of(alt.begin(), alt.end(), [&](const Symbol& s) {
          return s.is_rule() ? static_cast<bool>(productive[s.index])
                             : !byte_sets_[s.index].empty();
        });
        if (ok) {
          productive[r] = true;
          changed = true;
          break;
        }
      }
    }
  }
  if (!productive[root]) {
    return absl::InvalidArgumentError(absl::StrCat("the grammar accepts nothing: rule \"",
                                                   rules_[root].name, "\" can never finish"));
  }
  for (int32_t r : order) {
    if (!productive[r]) {
      return absl::InvalidArgumentError(
          absl::StrCat("rule \"", rules_[r].name,
                       "\" can never finish (recursion without a base case, or an empty set)"));
    }
  }
  // Renumber: the root is 0, then discovery order; byte sets compacted the same way.
  std::vector<int32_t> new_rule(n, -1);
  for (size_t i = 0; i < order.size(); ++i) new_rule[order[i]] = static_cast<int32_t>(i);
  std::vector<int32_t> new_set(byte_sets_.size(), -1);
  Grammar g;
  g.root = 0;
  for (int32_t r : order) {
    Rule rule{std::move(rules_[r].name), {}};
    for (Alternative& alt : rules_[r].alternatives) {
      for (Symbol& s : alt) {
        if (s.is_rule()) {
          s.index = new_rule[s.index];
        } else {
          if (new_set[s.index] < 0) {
            new_set[s.index] = static_cast<int32_t>(g.byte_sets.size());
            g.byte_sets.push_back(byte_sets_[s.index]);
          }
          s.index = new_set[s.index];
        }
      }
      rule.alternatives.push_back(std::move(alt));
    }
    g.rules.push_back(std::move(rule));
  }
  // Loops of reachable rules (a reachable top reaches all its parts and its unit).
  for (Loop& loop : loops_) {
    if (new_rule[loop.top] < 0) continue;
    Loop out{loop.unit, new_rule[loop.top], {}};
    out.unit.index = loop.unit.is_rule() ? new_rule[loop.unit.index] : new_set[loop.unit.index];
    if (out.unit.index < 0) continue;
    for (int32_t x : loop.parts) {
      if (new_rule[x] >= 0) out.parts.push_back(new_rule[x]);
    }
    g.loops.push_back(std::move(out));
  }
  return g;
}

}  // namespace muse::structured
