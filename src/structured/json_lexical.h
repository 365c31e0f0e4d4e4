// JSON's lexical pieces as grammar rules, for the JSON Schema compiler (json_schema.cc):
// whitespace, strings (any, counted, matching a text grammar, keys outside a set), numbers,
// integer ranges and string formats. Each piece is built once per grammar and shared.
//
// Strings. A string unit is one code point. Unconstrained and length-counted strings accept every
// JSON escape (\" \\ \/ \b \f \n \r \t \uXXXX, a surrogate pair \uD8xx\uDCxx counting as one code
// point; lone surrogates are refused, as they encode no code point). Strings whose TEXT is
// constrained (a pattern, a key that must differ from the declared names) accept the canonical
// escaping only - what every JSON serialiser emits: \" and \\, control characters as \b \f \n
// \r \t or \u00XX, everything else raw - so that one decoded text has one spelling per code point
// and "differs from a name" can be decided byte by byte.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "src/structured/grammar.h"

namespace muse::structured {

class JsonLexicon {
 public:
  // `compact`: no whitespace anywhere; else up to `max_whitespace` bytes of " \n\t" around
  // structural tokens.
  JsonLexicon(GrammarBuilder* builder, bool compact, int max_whitespace);

  GrammarBuilder& builder() { return *b_; }
  // Optional whitespace (nothing when compact).
  void AppendWs(Alternative* alt);
  // ws "," ws and ws ":" ws.
  void AppendComma(Alternative* alt);
  void AppendColon(Alternative* alt);
  Symbol Comma();

  Symbol AnyValue();
  Symbol AnyObject();
  Symbol AnyString();
  Symbol Number();   // JSON number syntax
  Symbol Boolean();  // true | false
  Symbol Null();
  // A quoted string of min..max code points (max < 0: unbounded).
  Symbol StringOfLength(int min, int max);
  // Integers in [lo, hi] (nullopt: unbounded on that side), without leading zeros or "-0";
  // nullopt when the range is empty.
  std::optional<Symbol> IntegerRange(std::optional<int64_t> lo, std::optional<int64_t> hi);
  // A quoted string whose text is derived by `text` (a grammar over UTF-8 text, e.g. a regex's),
  // optionally preceded / followed by any text.
  absl::StatusOr<Symbol> StringMatching(const Grammar& text, bool any_prefix, bool any_suffix);
  // A quoted string whose text is none of `names`.
  absl::StatusOr<Symbol> KeyNotIn(const std::vector<std::string>& names);
  // A quoted date / time / date-time (RFC 3339 full-date, full-time, date-time), uuid or email;
  // NotFound for any other format name.
  absl::StatusOr<Symbol> Format(std::string_view name);

 private:
  Symbol Seq(Alternative alt, std::string_view name);
  Symbol RawChar();        // one code point that needs no escape
  Symbol AnyChar();        // one code point, any escape
  Symbol CanonicalChar();  // one code point, canonical escape
  // The canonical spellings of code point `cp`, appended as alternatives.
  void AppendCanonical(uint32_t cp, std::vector<Alternative>* alts);
  // One canonical code point not in `excluded` (sorted).
  absl::StatusOr<Symbol> CanonicalCharExcept(const std::vector<uint32_t>& excluded);
  Symbol EscapedByteSet(const ByteSet& set);
  Symbol Digits(char lo, char hi);
  // Same-length decimal strings between lo and hi (inclusive), appended to `alt`.
  void AppendDigitRange(std::string_view lo, std::string_view hi, Alternative* alt);
  // Non-negative integers in [lo, hi] (hi nullopt: unbounded) as canonical decimals.
  Symbol Magnitude(uint64_t lo, std::optional<uint64_t> hi);
  Symbol Date();
  Symbol Time();

  GrammarBuilder* b_;
  bool compact_;
  int max_ws_;
  std::optional<Symbol> ws_, comma_, value_, object_, array_, string_, number_, boolean_, null_,
      raw_char_, any_char_, canonical_char_, canonical_star_, date_, time_;
  std::map<std::array<uint64_t, 4>, Symbol> escaped_sets_;
};

}  // namespace muse::structured
