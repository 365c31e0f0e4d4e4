// Tokenizer for chat templates: a port of @huggingface/jinja's lexer, including its
// preprocessing (trim_blocks, lstrip_blocks and the transformers `generation` tag).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace muse::jinja {

enum class TokenType {
  kText,
  kNumericLiteral,
  kStringLiteral,
  kIdentifier,
  kEquals,
  kOpenParen,
  kCloseParen,
  kOpenStatement,
  kCloseStatement,
  kOpenExpression,
  kCloseExpression,
  kOpenSquareBracket,
  kCloseSquareBracket,
  kOpenCurlyBracket,
  kCloseCurlyBracket,
  kComma,
  kDot,
  kColon,
  kPipe,
  kAdditiveBinaryOperator,
  kMultiplicativeBinaryOperator,
  kExponentiationBinaryOperator,
  kComparisonBinaryOperator,
  kUnaryOperator,
  kComment,
};

const char* TokenTypeName(TokenType type);

struct Token {
  std::string value;
  TokenType type;
};

struct LexOptions {
  bool trim_blocks = true;  // what HF transformers and @huggingface/jinja use
  bool lstrip_blocks = true;
};

// Applies the reference's regex preprocessing to the raw template source.
std::string Preprocess(std::string_view source, const LexOptions& options);

absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source,
                                            const LexOptions& options = {});

}  // namespace muse::jinja
