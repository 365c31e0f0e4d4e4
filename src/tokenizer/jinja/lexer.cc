#include "src/tokenizer/jinja/lexer.h"

#include <array>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "src/tokenizer/jinja/unicode.h"

namespace muse::jinja {

const char* TokenTypeName(TokenType type) {
  static constexpr std::array<const char*, 25> kNames = {"Text",
                                                         "NumericLiteral",
                                                         "StringLiteral",
                                                         "Identifier",
                                                         "Equals",
                                                         "OpenParen",
                                                         "CloseParen",
                                                         "OpenStatement",
                                                         "CloseStatement",
                                                         "OpenExpression",
                                                         "CloseExpression",
                                                         "OpenSquareBracket",
                                                         "CloseSquareBracket",
                                                         "OpenCurlyBracket",
                                                         "CloseCurlyBracket",
                                                         "Comma",
                                                         "Dot",
                                                         "Colon",
                                                         "Pipe",
                                                         "AdditiveBinaryOperator",
                                                         "MultiplicativeBinaryOperator",
                                                         "ExponentiationBinaryOperator",
                                                         "ComparisonBinaryOperator",
                                                         "UnaryOperator",
                                                         "Comment"};
  return kNames[static_cast<size_t>(type)];
}

namespace {

bool IsLineTerminatorAt(std::string_view s, size_t i, size_t* len) {
  if (s[i] == '\n' || s[i] == '\r') {
    *len = 1;
    return true;
  }
  if (s.substr(i, 3) == "\xE2\x80\xA8" || s.substr(i, 3) == "\xE2\x80\xA9") {
    *len = 3;
    return true;
  }
  return false;
}

// /^[ \t]*({[#%-])/gm -> "$1"
std::string LstripBlocks(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  bool line_start = true;
  while (i < s.size()) {
    if (line_start) {
      size_t j = i;
      while (j < s.size() && (s[j] == ' ' || s[j] == '\t')) ++j;
      if (j + 1 < s.size() && s[j] == '{' &&
          (s[j + 1] == '#' || s[j + 1] == '%' || s[j + 1] == '-'))
        i = j;
      line_start = false;
      continue;
    }
    size_t len = 0;
    if (IsLineTerminatorAt(s, i, &len)) {
      out.append(s.substr(i, len));
      i += len;
      line_start = true;
      continue;
    }
    out += s[i++];
  }
  return out;
}

// /([#%-]})\n/g -> "$1"
std::string TrimBlocks(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    if (i + 2 < s.size() && (s[i] == '#' || s[i] == '%' || s[i] == '-') && s[i + 1] == '}' &&
        s[i + 2] == '\n') {
      out += s[i];
      out += '}';
      i += 3;
      continue;
    }
    out += s[i++];
  }
  return out;
}

size_t SkipWs(std::string_view s, size_t i) {
  while (size_t n = WhitespaceLenAt(s, i)) i += n;
  return i;
}

// /(\s*){%(-?)\s*(?:end)?generation\s*(-?)%}(\s*)/gs -> (lstrip ? "" : before) + (rstrip ? "" :
// after)
std::string RemoveGenerationTags(std::string_view s) {
  std::string out;
  size_t i = 0;
  size_t protected_len = 0;  // output bytes a previous match consumed; not reusable as `before`
  while (i < s.size()) {
    if (s.substr(i, 2) == "{%") {
      size_t j = i + 2;
      const bool lstrip = j < s.size() && s[j] == '-';
      if (lstrip) ++j;
      j = SkipWs(s, j);
      if (s.substr(j, 3) == "end") j += 3;
      if (s.substr(j, 10) == "generation") {
        j = SkipWs(s, j + 10);
        const bool rstrip = j < s.size() && s[j] == '-';
        if (rstrip) ++j;
        if (s.substr(j, 2) == "%}") {
          j += 2;
          if (lstrip) {
            while (out.size() > protected_len) {
              const size_t n = WhitespaceLenBefore(out, out.size());
              if (n == 0) break;
              out.resize(out.size() - n);
            }
          }
          const size_t after_end = SkipWs(s, j);
          if (!rstrip) out.append(s.substr(j, after_end - j));
          protected_len = out.size();
          i = after_end;
          continue;
        }
      }
    }
    out += s[i++];
  }
  return out;
}

bool IsWordChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

struct MappingEntry {
  std::string_view seq;
  TokenType type;
};

constexpr std::array<MappingEntry, 29> kMappingTable = {{
    {"{%", TokenType::kOpenStatement},
    {"%}", TokenType::kCloseStatement},
    {"{{", TokenType::kOpenExpression},
    {"}}", TokenType::kCloseExpression},
    {"(", TokenType::kOpenParen},
    {")", TokenType::kCloseParen},
    {"{", TokenType::kOpenCurlyBracket},
    {"}", TokenType::kCloseCurlyBracket},
    {"[", TokenType::kOpenSquareBracket},
    {"]", TokenType::kCloseSquareBracket},
    {",", TokenType::kComma},
    {".", TokenType::kDot},
    {":", TokenType::kColon},
    {"|", TokenType::kPipe},
    {"<=", TokenType::kComparisonBinaryOperator},
    {">=", TokenType::kComparisonBinaryOperator},
    {"==", TokenType::kComparisonBinaryOperator},
    {"!=", TokenType::kComparisonBinaryOperator},
    {"<", TokenType::kComparisonBinaryOperator},
    {">", TokenType::kComparisonBinaryOperator},
    {"+", TokenType::kAdditiveBinaryOperator},
    {"-", TokenType::kAdditiveBinaryOperator},
    {"~", TokenType::kAdditiveBinaryOperator},
    {"**", TokenType::kExponentiationBinaryOperator},
    {"*", TokenType::kMultiplicativeBinaryOperator},
    {"//", TokenType::kMultiplicativeBinaryOperator},
    {"/", TokenType::kMultiplicativeBinaryOperator},
    {"%", TokenType::kMultiplicativeBinaryOperator},
    {"=", TokenType::kEquals},
}};

struct LexError {
  std::string message;
};

class Lexer {
 public:
  explicit Lexer(std::string src) : src_(std::move(src)) {}

  std::vector<Token> Run();

 private:
  char At(size_t i) const { return i < src_.size() ? src_[i] : '\0'; }
  bool StartsWith(std::string_view seq) const {
    return std::string_view(src_).substr(pos_, seq.size()) == seq;
  }
  std::string ConsumeEscapedChar();
  template <typename Pred>
  std::string ConsumeWhile(Pred pred);
  void StripTrailingWhitespace();
  void SkipLeadingWhitespace() { pos_ = SkipWs(src_, pos_); }
  const Token* Last() const { return tokens_.empty() ? nullptr : &tokens_.back(); }

  std::string src_;
  size_t pos_ = 0;
  int curly_depth_ = 0;
  std::vector<Token> tokens_;
};

std::string Lexer::ConsumeEscapedChar() {
  ++pos_;  // the backslash
  if (pos_ >= src_.size()) throw LexError{"Unexpected end of input"};
  const char escaped = src_[pos_++];
  if (escaped == 'x' || escaped == 'u') {
    const size_t length = escaped == 'x' ? 2 : 4;
    const std::string hex = src_.substr(pos_, length);
    bool ok = hex.size() == length;
    for (char c : hex) ok = ok && std::isxdigit(static_cast<unsigned char>(c));
    if (!ok) {
      throw LexError{
          absl::StrCat("Invalid hexadecimal escape sequence: \\", std::string(1, escaped), hex)};
    }
    std::string out;
    AppendUtf8(out, static_cast<uint32_t>(std::stoul(hex, nullptr, 16)));
    pos_ += length;
    return out;
  }
  switch (escaped) {
    case 'n':
      return "\n";
    case 't':
      return "\t";
    case 'r':
      return "\r";
    case 'b':
      return "\b";
    case 'f':
      return "\f";
    case 'v':
      return "\v";
    case '\'':
      return "'";
    case '"':
      return "\"";
    case '\\':
      return "\\";
    default:
      throw LexError{absl::StrCat("Unexpected escaped character: ", std::string(1, escaped))};
  }
}

template <typename Pred>
std::string Lexer::ConsumeWhile(Pred pred) {
  std::string str;
  while (pos_ < src_.size() && pred(pos_)) {
    if (src_[pos_] == '\\') {
      str += ConsumeEscapedChar();
      continue;
    }
    str += src_[pos_++];
    if (pos_ >= src_.size()) throw LexError{"Unexpected end of input"};
  }
  return str;
}

void Lexer::StripTrailingWhitespace() {
  if (tokens_.empty() || tokens_.back().type != TokenType::kText) return;
  tokens_.back().value = JsTrim(tokens_.back().value, false, true);
  if (tokens_.back().value.empty()) tokens_.pop_back();
}

std::vector<Token> Lexer::Run() {
  while (pos_ < src_.size()) {
    const Token* last = Last();
    if (last == nullptr || last->type == TokenType::kCloseStatement ||
        last->type == TokenType::kCloseExpression || last->type == TokenType::kComment) {
      std::string text;
      while (pos_ < src_.size() &&
             !(src_[pos_] == '{' &&
               (At(pos_ + 1) == '%' || At(pos_ + 1) == '{' || At(pos_ + 1) == '#'))) {
        text += src_[pos_++];
      }
      if (!text.empty()) {
        tokens_.push_back({std::move(text), TokenType::kText});
        continue;
      }
    }

    if (src_[pos_] == '{' && At(pos_ + 1) == '#') {
      pos_ += 2;
      const bool strip_before = At(pos_) == '-';
      if (strip_before) ++pos_;
      std::string comment;
      while (At(pos_) != '#' || At(pos_ + 1) != '}') {
        if (pos_ + 2 >= src_.size()) throw LexError{"Missing end of comment tag"};
        comment += src_[pos_++];
      }
      const bool strip_after = !comment.empty() && comment.back() == '-';
      if (strip_after) comment.pop_back();
      if (strip_before) StripTrailingWhitespace();
      tokens_.push_back({std::move(comment), TokenType::kComment});
      pos_ += 2;
      if (strip_after) SkipLeadingWhitespace();
      continue;
    }

    if (StartsWith("{%-")) {
      StripTrailingWhitespace();
      tokens_.push_back({"{%", TokenType::kOpenStatement});
      pos_ += 3;
      continue;
    }
    if (StartsWith("{{-")) {
      StripTrailingWhitespace();
      tokens_.push_back({"{{", TokenType::kOpenExpression});
      curly_depth_ = 0;
      pos_ += 3;
      continue;
    }

    while (size_t n = WhitespaceLenAt(src_, pos_)) {
      pos_ += n;
      if (pos_ >= src_.size()) throw LexError{"Unexpected end of input"};
    }

    if (StartsWith("-%}")) {
      tokens_.push_back({"%}", TokenType::kCloseStatement});
      pos_ += 3;
      SkipLeadingWhitespace();
      continue;
    }
    if (StartsWith("-}}")) {
      tokens_.push_back({"}}", TokenType::kCloseExpression});
      pos_ += 3;
      SkipLeadingWhitespace();
      continue;
    }
    if (pos_ >= src_.size()) break;

    const char ch = src_[pos_];
    if (ch == '-' || ch == '+') {
      const Token* prev = Last();
      if (prev == nullptr || prev->type == TokenType::kText) {
        throw LexError{absl::StrCat("Unexpected character: ", std::string(1, ch))};
      }
      switch (prev->type) {
        case TokenType::kIdentifier:
        case TokenType::kNumericLiteral:
        case TokenType::kStringLiteral:
        case TokenType::kCloseParen:
        case TokenType::kCloseSquareBracket:
          break;  // binary operator
        default: {
          ++pos_;
          std::string num = ConsumeWhile([this](size_t i) { return IsDigit(src_[i]); });
          if (!num.empty() && At(pos_) == '.' && IsDigit(At(pos_ + 1))) {
            ++pos_;
            num += "." + ConsumeWhile([this](size_t i) { return IsDigit(src_[i]); });
          }
          const TokenType type =
              num.empty() ? TokenType::kUnaryOperator : TokenType::kNumericLiteral;
          tokens_.push_back({std::string(1, ch) + num, type});
          continue;
        }
      }
    }

    bool matched = false;
    for (const MappingEntry& entry : kMappingTable) {
      if (entry.seq == "}}" && curly_depth_ > 0) continue;
      if (StartsWith(entry.seq)) {
        tokens_.push_back({std::string(entry.seq), entry.type});
        if (entry.type == TokenType::kOpenExpression) {
          curly_depth_ = 0;
        } else if (entry.type == TokenType::kOpenCurlyBracket) {
          ++curly_depth_;
        } else if (entry.type == TokenType::kCloseCurlyBracket) {
          --curly_depth_;
        }
        pos_ += entry.seq.size();
        matched = true;
        break;
      }
    }
    if (matched) continue;

    if (ch == '\'' || ch == '"') {
      ++pos_;
      std::string str = ConsumeWhile([this, ch](size_t i) { return src_[i] != ch; });
      if (pos_ >= src_.size()) throw LexError{"Unexpected end of input"};
      tokens_.push_back({std::move(str), TokenType::kStringLiteral});
      ++pos_;
      continue;
    }
    if (IsDigit(ch)) {
      std::string num = ConsumeWhile([this](size_t i) { return IsDigit(src_[i]); });
      const Token* prev = Last();
      if ((prev == nullptr || prev->type != TokenType::kDot) && At(pos_) == '.' &&
          IsDigit(At(pos_ + 1))) {
        ++pos_;
        num += "." + ConsumeWhile([this](size_t i) { return IsDigit(src_[i]); });
      }
      tokens_.push_back({std::move(num), TokenType::kNumericLiteral});
      continue;
    }
    if (IsWordChar(ch)) {
      std::string word = ConsumeWhile([this](size_t i) { return IsWordChar(src_[i]); });
      tokens_.push_back({std::move(word), TokenType::kIdentifier});
      continue;
    }
    size_t len = 1;
    DecodeAt(src_, pos_, &len);
    throw LexError{absl::StrCat("Unexpected character: ", src_.substr(pos_, len))};
  }
  return std::move(tokens_);
}

}  // namespace

std::string Preprocess(std::string_view source, const LexOptions& options) {
  std::string t(source);
  if (!t.empty() && t.back() == '\n') t.pop_back();
  if (options.lstrip_blocks) t = LstripBlocks(t);
  if (options.trim_blocks) t = TrimBlocks(t);
  return RemoveGenerationTags(t);
}

absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source, const LexOptions& options) {
  try {
    return Lexer(Preprocess(source, options)).Run();
  } catch (const LexError& e) {
    return absl::InvalidArgumentError(absl::StrCat("jinja: syntax error: ", e.message));
  }
}

}  // namespace muse::jinja
