// Grammar: the one representation every constraint compiles to (JSON schema, regex, EBNF,
// choices). A context-free grammar over BYTES: a rule is a list of alternatives, an alternative a
// sequence of symbols, a symbol either a byte set (one byte from a 256-bit set) or a reference to
// a rule. Unicode lives above this level: a code point range becomes a small rule of UTF-8 byte
// sequences (AddUtf8Range), so the matcher never decodes text and tokens that split a character
// are handled like any other bytes.
//
// Built with GrammarBuilder; Finish() validates (every reference defined, the root reachable and
// able to derive a finite string, nothing unproductive left) and returns an immutable Grammar that
// matchers share across threads.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace muse::structured {

// A set of bytes (256 bits).
class ByteSet {
 public:
  ByteSet() = default;
  static ByteSet Single(uint8_t b);
  static ByteSet Range(uint8_t lo, uint8_t hi);  // inclusive; empty when lo > hi
  static ByteSet All();

  bool Has(uint8_t b) const { return (bits_[b >> 6] >> (b & 63)) & 1; }
  void Add(uint8_t b) { bits_[b >> 6] |= uint64_t{1} << (b & 63); }
  void AddRange(uint8_t lo, uint8_t hi);
  ByteSet& operator|=(const ByteSet& o);
  ByteSet Complement() const;
  bool empty() const;
  int size() const;
  bool operator==(const ByteSet& o) const { return bits_ == o.bits_; }
  const std::array<uint64_t, 4>& bits() const { return bits_; }

 private:
  std::array<uint64_t, 4> bits_{};
};

struct Symbol {
  enum class Kind : uint8_t { kBytes, kRule };
  Kind kind = Kind::kBytes;
  int32_t index = 0;  // into Grammar::byte_sets (kBytes) or Grammar::rules (kRule)

  static Symbol Bytes(int32_t i) { return {Kind::kBytes, i}; }
  static Symbol Rule(int32_t i) { return {Kind::kRule, i}; }
  bool is_rule() const { return kind == Kind::kRule; }
  bool operator==(const Symbol& o) const { return kind == o.kind && index == o.index; }
};

using Alternative = std::vector<Symbol>;  // empty = epsilon

struct Rule {
  std::string name;  // for messages and dumps; unique within a grammar
  std::vector<Alternative> alternatives;
};

// A repetition of one unit (Star, Plus, or a counted repeat / list), recorded by GrammarBuilder
// so token masks can count units instead of parsing every token (token_mask_cache.h): `top` is
// the rule the rest of the grammar refers to; `parts` are the rules of its structure (top
// included: the doubling blocks, optional blocks, a left-recursive tail), referred to only from
// within the structure, every one of them deriving a sequence of `unit`s.
struct Loop {
  Symbol unit;
  int32_t top = 0;
  std::vector<int32_t> parts;
};

struct Grammar {
  std::vector<Rule> rules;
  std::vector<ByteSet> byte_sets;  // deduplicated
  int32_t root = 0;
  std::vector<Loop> loops;  // optional structure hints (a grammar without them is still complete)

  // GBNF-like text (rules in index order, the root first), for tests and error messages.
  std::string ToString() const;
};

// Unicode code points for the UTF-8 helpers.
struct CodepointRange {
  uint32_t lo = 0;
  uint32_t hi = 0;  // inclusive
};

class GrammarBuilder {
 public:
  // Declares a rule (alternatives may be added later; references may precede definitions).
  // Names are made unique by appending "_<n>" when taken.
  int32_t AddRule(std::string_view name);
  // Looks a rule up by its exact name; -1 when absent.
  int32_t FindRule(std::string_view name) const;
  void AddAlternative(int32_t rule, Alternative alt);
  const std::string& RuleName(int32_t rule) const { return rules_[rule].name; }
  int32_t num_rules() const { return static_cast<int32_t>(rules_.size()); }

  // One byte from `set` (deduplicated).
  Symbol Bytes(const ByteSet& set);
  Symbol Byte(uint8_t b) { return Bytes(ByteSet::Single(b)); }
  // The bytes of `text`, one symbol each, appended to `alt`.
  void AppendLiteral(std::string_view text, Alternative* alt);
  // A rule deriving exactly `text` (one rule per distinct text).
  Symbol Literal(std::string_view text);
  // A rule deriving the UTF-8 encoding of one code point in any of `ranges` (surrogates
  // D800-DFFF are never produced; ranges may overlap and be unsorted). `negate` takes the
  // complement within U+0000..U+10FFFF. Fails when the set is empty.
  absl::StatusOr<Symbol> Utf8Class(const std::vector<CodepointRange>& ranges, bool negate = false);

  // Repetition helpers: each returns a symbol for a fresh rule. Repetition is left-recursive
  // (R ::= R x | ...), which keeps Earley sets small for long runs.
  Symbol Optional(Symbol s);
  Symbol Star(Symbol s);
  Symbol Plus(Symbol s);
  // min..max copies (max < 0: unbounded), in O(log max) rules of doubling blocks (grammar.cc), so
  // an Earley set inside a long run holds O(log max) items of it; unbounded tails left-recursive.
  Symbol Repeat(Symbol s, int min, int max);
  // x (sep x)* when min_items >= 1, optional when 0; counts as in Repeat.
  Symbol SeparatedList(Symbol item, Symbol sep, int min_items, int max_items);
  // A rule whose alternatives are the given sequences.
  Symbol Choice(std::vector<Alternative> alternatives, std::string_view name = "choice");

  // Validates and returns the grammar rooted at `root`. Errors (InvalidArgument): an undefined
  // rule (declared, never given an alternative), a root that derives no finite string ("the
  // grammar accepts nothing"), rules that can never finish (unproductive) reachable from the
  // root are reported by name. Unreachable rules are dropped.
  absl::StatusOr<Grammar> Finish(int32_t root) &&;

 private:
  Symbol CountedList(Symbol item, std::optional<Symbol> sep, int min, int max);
  int32_t LeftRecursive(std::string_view name, Symbol s, bool allow_empty);

  std::vector<Rule> rules_;
  std::vector<Loop> loops_;
  std::vector<bool> defined_;
  std::vector<ByteSet> byte_sets_;
  absl::flat_hash_map<std::string, int32_t> names_;
  absl::flat_hash_map<std::string, int32_t> literals_;
  absl::flat_hash_map<std::string, int32_t> classes_;  // normalized code point ranges -> rule
};

}  // namespace muse::structured
