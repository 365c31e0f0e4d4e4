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
// A regular expression (ECMAScript / PCRE-like subset: literals, ., classes [..] with ranges and
// negation, \d \w \s \D \W \S, escapes, groups (?:..), alternation, * + ? {m} {m,} {m,n}; anchors
// ^ $ only at the ends) matching the WHOLE output.
absl::StatusOr<Grammar> CompileRegex(std::string_view regex);
// GBNF-like EBNF (llama.cpp's format): rule ::= alternatives, "literal", [classes], ( ),
// * + ? {m,n}, # comments. The root rule is "root".
absl::StatusOr<Grammar> CompileEbnf(std::string_view text);
// Exactly one of `choices` (vLLM's guided_choice).
absl::StatusOr<Grammar> ChoiceGrammar(const std::vector<std::string>& choices);

}  // namespace muse::structured
