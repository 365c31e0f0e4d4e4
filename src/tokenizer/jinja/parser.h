// Recursive-descent parser from tokens to the syntax tree; a port of @huggingface/jinja's
// parser with the same precedence rules.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "src/tokenizer/jinja/ast.h"
#include "src/tokenizer/jinja/lexer.h"

namespace muse::jinja {

// Returns the top-level statements of the template.
absl::StatusOr<NodeList> ParseTokens(const std::vector<Token>& tokens);

}  // namespace muse::jinja
