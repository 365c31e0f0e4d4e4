// Front ends: every kind of constraint a client can send, compiled to a Grammar. Errors are
// InvalidArgument and name what is wrong and where (a JSON pointer into the schema, a regex
// offset, a grammar line:column), e.g. "schema /properties/a: unsupported keyword
// \"patternProperties\"".
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "src/structured/grammar.h"

namespace muse::structured {

struct JsonSchemaOptions {
  // OpenAI strict mode's output: compact JSON (no whitespace between tokens), properties in the
  // schema's order. false: optional whitespace (at most `max_whitespace` bytes of " \n\t") around
  // structural tokens, as json_object mode allows.
  bool compact = true;
  int max_whitespace = 2;
  // additionalProperties when the schema does not say: false in strict mode (OpenAI), true
  // otherwise (JSON Schema's default).
  bool strict = true;
};

// A JSON Schema (draft 7 / 2019-09 subset, see README.md) to a grammar over its instances'
// serialisation.
absl::StatusOr<Grammar> CompileJsonSchema(std::string_view schema_json,
                                          const JsonSchemaOptions& options = {});
// Any JSON value whose top level is an object (OpenAI's json_object mode).
absl::StatusOr<Grammar> JsonObjectGrammar(const JsonSchemaOptions& options = {});
// A regular expression matching the WHOLE output. The dialect is PCRE2's in UTF mode without UCP,
// plus ECMAScript's \uHHHH / \u{H..}: literals, "." (any code point but \n), classes [..] with
// ranges, negation and escapes ("]" first is literal), \d \w \s \D \W \S (ASCII), \n \r \t \f
// \v (VT, as in ECMAScript) \a \e \0 \xHH \x{H..}, escaped metacharacters, groups ( ) (?: )
// (?<name> ), alternation, * + ? {m} {m,} {m,n} (a lazy "?" suffix is accepted: same language);
// ^ / $ only opening / closing a top-level branch. Refused with their offset: lookaround,
// backreferences, other anchors, possessive quantifiers, inline flags, \p{..}, and a regex that
// accepts nothing.
// kEcmaScript (JSON Schema's `pattern`, which ECMA-262 defines): \s \S are ECMA-262's WhiteSpace
// and LineTerminator sets (NBSP, U+FEFF, category Zs, U+2028/9 included) and "." excludes every
// LineTerminator (\n \r U+2028 U+2029); \d \w are ASCII in both.
enum class RegexDialect { kPcre2, kEcmaScript };
absl::StatusOr<Grammar> CompileRegex(std::string_view regex,
                                     RegexDialect dialect = RegexDialect::kPcre2);
// GBNF-like EBNF (llama.cpp's format): rule ::= alternatives, names [A-Za-z0-9_-]+, "literal" and
// [classes] with \n \r \t \xHH \uHHHH \UHHHHHHHH (code points) and escaped punctuation, ( ),
// "." (any code point, \n included, as in llama.cpp), postfix * + ? {m} {m,} {m,n}, # comments.
// Newlines are whitespace: a rule ends where the next "name ::=" starts. The root rule is "root".
// Errors name the line:column (undefined or duplicate rules, rules that can never finish, ...).
absl::StatusOr<Grammar> CompileEbnf(std::string_view text);
// Exactly one of `choices` (vLLM's guided_choice), byte for byte; duplicates are harmless, an
// empty list is InvalidArgument.
absl::StatusOr<Grammar> ChoiceGrammar(const std::vector<std::string>& choices);

}  // namespace muse::structured
