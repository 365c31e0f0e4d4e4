#include "src/tokenizer/jinja/parser.h"

#include <algorithm>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "src/tokenizer/jinja/value.h"

namespace muse::jinja {
namespace {

struct ParseError {
  std::string message;
};

enum class ArgMode { kCall, kParameters };

class Parser {
 public:
  explicit Parser(const std::vector<Token>& tokens) : tokens_(tokens) {}

  NodeList Run() {
    NodeList program;
    while (pos_ < tokens_.size()) program.push_back(ParseAny());
    return program;
  }

 private:
  [[noreturn]] void Error(std::string message) const { throw ParseError{std::move(message)}; }

  const Token& Peek(size_t offset = 0) const {
    if (pos_ + offset >= tokens_.size()) Error("Unexpected end of template");
    return tokens_[pos_ + offset];
  }

  const Token& Expect(TokenType type, const char* error) {
    if (pos_ >= tokens_.size()) Error(absl::StrCat(error, ". Unexpected end of template"));
    const Token& t = tokens_[pos_++];
    if (t.type != type)
      Error(absl::StrCat(error, ". ", TokenTypeName(t.type), " !== ", TokenTypeName(type), "."));
    return t;
  }

  void ExpectIdentifier(std::string_view name) {
    if (!IsIdentifier(name)) Error(absl::StrCat("Expected ", std::string(name)));
    ++pos_;
  }

  bool Is(TokenType type, size_t offset = 0) const {
    return pos_ + offset < tokens_.size() && tokens_[pos_ + offset].type == type;
  }

  bool IsIdentifier(std::string_view name, size_t offset = 0) const {
    return Is(TokenType::kIdentifier, offset) && tokens_[pos_ + offset].value == name;
  }

  bool IsStatement(std::initializer_list<std::string_view> names) const {
    if (!Is(TokenType::kOpenStatement) || !Is(TokenType::kIdentifier, 1)) {
      if (pos_ >= tokens_.size()) {
        std::string expected;
        for (auto n : names)
          absl::StrAppend(&expected, expected.empty() ? "" : " or ", "{% ", std::string(n), " %}");
        Error(absl::StrCat("Unexpected end of template: expected ", expected));
      }
      return false;
    }
    for (auto n : names) {
      if (tokens_[pos_ + 1].value == n) return true;
    }
    return false;
  }

  NodePtr ParseAny();
  NodePtr ParseStatement();
  NodePtr ParseSet();
  NodePtr ParseIf();
  NodePtr ParseMacro();
  NodePtr ParseFor();
  NodePtr ParseExpressionSequence(bool primary);
  NodePtr ParseExpression() {
    const DepthGuard guard(this);
    return ParseIfExpression();
  }
  NodePtr ParseIfExpression();
  NodePtr ParseLogicalOr();
  NodePtr ParseLogicalAnd();
  NodePtr ParseLogicalNegation();
  NodePtr ParseComparison();
  NodePtr ParseAdditive();
  NodePtr ParseMultiplicative();
  NodePtr ParsePower();
  NodePtr ParseTest();
  NodePtr ParseFilter();
  NodePtr ParseUnarySign();
  NodePtr ParseCallMember();
  NodePtr ParseCall(NodePtr callee);
  NodeList ParseArgs(ArgMode mode);
  NodePtr ParseMemberArgs();
  NodePtr ParseMember(NodePtr object);
  NodePtr ParsePrimary();
  void ParseFilterRef(FilterRef* filter);
  NodeList ParseBodyUntil(std::initializer_list<std::string_view> names) {
    NodeList body;
    while (!IsStatement(names)) body.push_back(ParseAny());
    return body;
  }
  void ExpectEnd(std::string_view name) {
    Expect(TokenType::kOpenStatement, "Expected {% token");
    ExpectIdentifier(name);
    Expect(TokenType::kCloseStatement, "Expected %} token");
  }

  // Bounds the parser's recursion (nested statements, parentheses, `not not ...`).
  struct DepthGuard {
    explicit DepthGuard(Parser* p) : parser(p) {
      if (++parser->depth_ > kMaxParseDepth) {
        parser->Error(absl::StrCat("nesting exceeds the limit of ", kMaxParseDepth, " levels"));
      }
    }
    ~DepthGuard() { --parser->depth_; }
    Parser* parser;
  };

  const std::vector<Token>& tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
};

NodePtr Parser::ParseAny() {
  const DepthGuard guard(this);
  const Token& t = Peek();
  switch (t.type) {
    case TokenType::kComment:
      ++pos_;
      return MakeNode(NodeKind::kComment);
    case TokenType::kText: {
      auto n = MakeNode(NodeKind::kText);
      n->name = tokens_[pos_++].value;
      return n;
    }
    case TokenType::kOpenStatement:
      return ParseStatement();
    case TokenType::kOpenExpression: {
      ++pos_;
      NodePtr e = ParseExpression();
      Expect(TokenType::kCloseExpression, "Expected closing expression token");
      return e;
    }
    default:
      Error(absl::StrCat("Unexpected token type: ", TokenTypeName(t.type)));
  }
}

NodePtr Parser::ParseStatement() {
  Expect(TokenType::kOpenStatement, "Expected opening statement token");
  if (!Is(TokenType::kIdentifier))
    Error(absl::StrCat("Unknown statement, got ", TokenTypeName(Peek().type)));
  const std::string name = Peek().value;
  NodePtr result;
  if (name == "set") {
    ++pos_;
    result = ParseSet();
  } else if (name == "if") {
    ++pos_;
    result = ParseIf();
    ExpectEnd("endif");
  } else if (name == "macro") {
    ++pos_;
    result = ParseMacro();
    ExpectEnd("endmacro");
  } else if (name == "for") {
    ++pos_;
    result = ParseFor();
    ExpectEnd("endfor");
  } else if (name == "call") {
    ++pos_;
    result = MakeNode(NodeKind::kCallStatement);
    if (Is(TokenType::kOpenParen)) result->args = ParseArgs(ArgMode::kParameters);
    NodePtr callee = ParsePrimary();
    if (callee->kind != NodeKind::kIdentifier)
      Error("Expected identifier following call statement");
    auto call = MakeNode(NodeKind::kCall);
    call->a = std::move(callee);
    call->args = ParseArgs(ArgMode::kCall);
    result->a = std::move(call);
    Expect(TokenType::kCloseStatement, "Expected closing statement token");
    result->body = ParseBodyUntil({"endcall"});
    ExpectEnd("endcall");
  } else if (name == "break" || name == "continue") {
    ++pos_;
    Expect(TokenType::kCloseStatement, "Expected closing statement token");
    result = MakeNode(name == "break" ? NodeKind::kBreak : NodeKind::kContinue);
  } else if (name == "filter") {
    ++pos_;
    result = MakeNode(NodeKind::kFilterStatement);
    ParseFilterRef(&result->filter);
    Expect(TokenType::kCloseStatement, "Expected closing statement token");
    result->body = ParseBodyUntil({"endfilter"});
    ExpectEnd("endfilter");
  } else {
    Error(absl::StrCat("Unknown statement type: ", name));
  }
  return result;
}

NodePtr Parser::ParseSet() {
  auto n = MakeNode(NodeKind::kSet);
  n->a = ParseExpressionSequence(false);
  if (Is(TokenType::kEquals)) {
    ++pos_;
    n->b = ParseExpressionSequence(false);
  } else {
    Expect(TokenType::kCloseStatement, "Expected %} token");
    n->body = ParseBodyUntil({"endset"});
    Expect(TokenType::kOpenStatement, "Expected {% token");
    ExpectIdentifier("endset");
  }
  Expect(TokenType::kCloseStatement, "Expected closing statement token");
  return n;
}

NodePtr Parser::ParseIf() {
  auto n = MakeNode(NodeKind::kIf);
  n->a = ParseExpression();
  Expect(TokenType::kCloseStatement, "Expected closing statement token");
  n->body = ParseBodyUntil({"elif", "else", "endif"});
  if (IsStatement({"elif"})) {
    pos_ += 2;
    n->alt.push_back(ParseIf());
  } else if (IsStatement({"else"})) {
    pos_ += 2;
    Expect(TokenType::kCloseStatement, "Expected closing statement token");
    n->alt = ParseBodyUntil({"endif"});
  }
  return n;
}

NodePtr Parser::ParseMacro() {
  auto n = MakeNode(NodeKind::kMacro);
  NodePtr name = ParsePrimary();
  if (name->kind != NodeKind::kIdentifier) Error("Expected identifier following macro statement");
  n->name = name->name;
  n->args = ParseArgs(ArgMode::kParameters);
  Expect(TokenType::kCloseStatement, "Expected closing statement token");
  n->body = ParseBodyUntil({"endmacro"});
  return n;
}

NodePtr Parser::ParseExpressionSequence(bool primary) {
  NodePtr first = primary ? ParsePrimary() : ParseExpression();
  if (!Is(TokenType::kComma)) return first;
  auto tuple = MakeNode(NodeKind::kTupleLiteral);
  tuple->args.push_back(std::move(first));
  while (true) {
    ++pos_;  // comma
    tuple->args.push_back(primary ? ParsePrimary() : ParseExpression());
    if (!Is(TokenType::kComma)) break;
  }
  return tuple;
}

NodePtr Parser::ParseFor() {
  auto n = MakeNode(NodeKind::kFor);
  n->a = ParseExpressionSequence(true);
  if (n->a->kind != NodeKind::kIdentifier && n->a->kind != NodeKind::kTupleLiteral) {
    Error("Expected identifier/tuple for the loop variable");
  }
  if (!IsIdentifier("in")) Error("Expected `in` keyword following loop variable");
  ++pos_;
  n->b = ParseExpression();
  Expect(TokenType::kCloseStatement, "Expected closing statement token");
  n->body = ParseBodyUntil({"endfor", "else"});
  if (IsStatement({"else"})) {
    pos_ += 2;
    Expect(TokenType::kCloseStatement, "Expected closing statement token");
    n->alt = ParseBodyUntil({"endfor"});
  }
  return n;
}

NodePtr Parser::ParseIfExpression() {
  NodePtr a = ParseLogicalOr();
  if (!IsIdentifier("if")) return a;
  ++pos_;
  NodePtr test = ParseLogicalOr();
  if (IsIdentifier("else")) {
    ++pos_;
    auto n = MakeNode(NodeKind::kTernary);
    n->a = std::move(test);
    n->b = std::move(a);
    n->c = ParseIfExpression();
    return n;
  }
  auto n = MakeNode(NodeKind::kSelect);
  n->a = std::move(a);
  n->b = std::move(test);
  return n;
}

NodePtr MakeBinary(std::string op, NodePtr left, NodePtr right) {
  auto n = MakeNode(NodeKind::kBinary);
  n->name = std::move(op);
  n->a = std::move(left);
  n->b = std::move(right);
  return n;
}

NodePtr Parser::ParseLogicalOr() {
  NodePtr left = ParseLogicalAnd();
  while (IsIdentifier("or")) {
    ++pos_;
    left = MakeBinary("or", std::move(left), ParseLogicalAnd());
  }
  return left;
}

NodePtr Parser::ParseLogicalAnd() {
  NodePtr left = ParseLogicalNegation();
  while (IsIdentifier("and")) {
    ++pos_;
    left = MakeBinary("and", std::move(left), ParseLogicalNegation());
  }
  return left;
}

NodePtr Parser::ParseLogicalNegation() {
  if (!IsIdentifier("not")) return ParseComparison();
  const DepthGuard guard(this);
  ++pos_;
  auto n = MakeNode(NodeKind::kUnary);
  n->name = "not";
  n->a = ParseLogicalNegation();
  return n;
}

NodePtr Parser::ParseComparison() {
  NodePtr left = ParseAdditive();
  while (true) {
    std::string op;
    if (IsIdentifier("not") && IsIdentifier("in", 1)) {
      op = "not in";
      pos_ += 2;
    } else if (IsIdentifier("in")) {
      op = "in";
      ++pos_;
    } else if (Is(TokenType::kComparisonBinaryOperator)) {
      op = tokens_[pos_++].value;
    } else {
      break;
    }
    left = MakeBinary(std::move(op), std::move(left), ParseAdditive());
  }
  return left;
}

NodePtr Parser::ParseAdditive() {
  NodePtr left = ParseMultiplicative();
  while (Is(TokenType::kAdditiveBinaryOperator)) {
    std::string op = tokens_[pos_++].value;
    left = MakeBinary(std::move(op), std::move(left), ParseMultiplicative());
  }
  return left;
}

NodePtr Parser::ParseMultiplicative() {
  NodePtr left = ParsePower();
  while (Is(TokenType::kMultiplicativeBinaryOperator)) {
    std::string op = tokens_[pos_++].value;
    left = MakeBinary(std::move(op), std::move(left), ParsePower());
  }
  return left;
}

NodePtr Parser::ParsePower() {
  NodePtr left = ParseTest();
  while (Is(TokenType::kExponentiationBinaryOperator)) {
    ++pos_;
    left = MakeBinary("**", std::move(left), ParseTest());
  }
  return left;
}

NodePtr Parser::ParseTest() {
  NodePtr operand = ParseFilter();
  while (IsIdentifier("is")) {
    ++pos_;
    const bool negate = IsIdentifier("not");
    if (negate) ++pos_;
    NodePtr test = ParsePrimary();
    if (test->kind != NodeKind::kIdentifier) Error("Expected identifier for the test");
    auto n = MakeNode(NodeKind::kTest);
    n->a = std::move(operand);
    n->name = test->name;
    n->flag = negate;
    operand = std::move(n);
  }
  return operand;
}

void Parser::ParseFilterRef(FilterRef* filter) {
  NodePtr name = ParsePrimary();
  if (name->kind != NodeKind::kIdentifier) Error("Expected identifier for the filter");
  filter->name = name->name;
  if (Is(TokenType::kOpenParen)) {
    filter->is_call = true;
    filter->args = ParseArgs(ArgMode::kCall);
    // `x | f(a).b` or `x | f(a)(b)` would be a member/call on the filter itself.
    if (Is(TokenType::kDot) || Is(TokenType::kOpenSquareBracket) || Is(TokenType::kOpenParen)) {
      Error(absl::StrCat("Unsupported expression after filter '", filter->name, "(...)'"));
    }
  }
}

NodePtr Parser::ParseFilter() {
  NodePtr operand = ParseUnarySign();
  while (Is(TokenType::kPipe)) {
    ++pos_;
    auto n = MakeNode(NodeKind::kFilter);
    n->a = std::move(operand);
    ParseFilterRef(&n->filter);
    operand = std::move(n);
  }
  return operand;
}

NodePtr Parser::ParseUnarySign() {
  if (pos_ < tokens_.size()) {
    const Token& t = tokens_[pos_];
    if ((t.type == TokenType::kUnaryOperator || t.type == TokenType::kAdditiveBinaryOperator) &&
        (t.value == "-" || t.value == "+")) {
      ++pos_;
      const DepthGuard guard(this);
      auto n = MakeNode(NodeKind::kUnary);
      n->name = t.value;
      n->a = ParseUnarySign();
      return n;
    }
  }
  return ParseCallMember();
}

NodePtr Parser::ParseCallMember() {
  NodePtr member = ParseMember(ParsePrimary());
  if (Is(TokenType::kOpenParen)) return ParseCall(std::move(member));
  return member;
}

NodePtr Parser::ParseCall(NodePtr callee) {
  auto call = MakeNode(NodeKind::kCall);
  call->a = std::move(callee);
  call->args = ParseArgs(ArgMode::kCall);
  NodePtr expr = ParseMember(std::move(call));
  if (Is(TokenType::kOpenParen)) expr = ParseCall(std::move(expr));
  return expr;
}

NodeList Parser::ParseArgs(ArgMode mode) {
  Expect(TokenType::kOpenParen, "Expected opening parenthesis for arguments list");
  NodeList args;
  std::set<std::string> names;
  bool saw_keyword = false, saw_spread = false;
  while (!Is(TokenType::kCloseParen)) {
    const bool kw_spread = Is(TokenType::kExponentiationBinaryOperator);
    const bool pos_spread = Is(TokenType::kMultiplicativeBinaryOperator) && Peek().value == "*";
    if (mode == ArgMode::kParameters && (kw_spread || pos_spread)) {
      Error("Argument unpacking is not allowed in parameter declarations");
    }
    if (kw_spread) {
      ++pos_;
      auto n = MakeNode(NodeKind::kKwSpread);
      n->a = ParseExpression();
      args.push_back(std::move(n));
      if (Is(TokenType::kComma)) ++pos_;
      if (!Is(TokenType::kCloseParen))
        Error("Expected closing parenthesis: `**` must be applied to the final argument");
      break;
    }
    NodePtr arg;
    if (pos_spread) {
      if (saw_spread) Error("Only one `*` argument unpacking is allowed");
      saw_spread = true;
      ++pos_;
      arg = MakeNode(NodeKind::kSpread);
      arg->a = ParseExpression();
    } else {
      arg = ParseExpression();
      if (Is(TokenType::kEquals)) {
        ++pos_;
        if (arg->kind != NodeKind::kIdentifier) {
          Error(mode == ArgMode::kParameters ? "Expected identifier for parameter declaration"
                                             : "Expected identifier for keyword argument");
        }
        auto kw = MakeNode(NodeKind::kKwarg);
        kw->name = arg->name;
        kw->a = ParseExpression();
        arg = std::move(kw);
      }
      if (mode == ArgMode::kParameters) {
        if (arg->kind != NodeKind::kIdentifier && arg->kind != NodeKind::kKwarg) {
          Error("Expected identifier for parameter declaration");
        }
        if (!names.insert(arg->name).second)
          Error(absl::StrCat("Duplicate parameter name: ", arg->name));
      }
      if (arg->kind == NodeKind::kKwarg) {
        saw_keyword = true;
      } else if (saw_keyword) {
        Error(mode == ArgMode::kCall ? "Positional arguments must come before keyword arguments"
                                     : "Non-default argument follows default argument");
      } else if (saw_spread) {
        Error("Positional arguments must not follow `*` argument unpacking");
      }
    }
    args.push_back(std::move(arg));
    if (Is(TokenType::kComma)) ++pos_;
  }
  Expect(TokenType::kCloseParen, "Expected closing parenthesis for arguments list");
  return args;
}

NodePtr Parser::ParseMemberArgs() {
  std::vector<NodePtr> slices;
  bool is_slice = false;
  while (!Is(TokenType::kCloseSquareBracket)) {
    if (pos_ >= tokens_.size()) Error("Expected closing square bracket");
    if (Is(TokenType::kColon)) {
      slices.push_back(nullptr);
      ++pos_;
      is_slice = true;
    } else {
      slices.push_back(ParseExpression());
      if (Is(TokenType::kColon)) {
        ++pos_;
        is_slice = true;
      }
    }
  }
  if (slices.empty()) Error("Expected at least one argument for member/slice expression");
  if (!is_slice) return std::move(slices[0]);
  if (slices.size() > 3) Error("Expected 0-3 arguments for slice expression");
  auto n = MakeNode(NodeKind::kSlice);
  n->a = std::move(slices[0]);
  if (slices.size() > 1) n->b = std::move(slices[1]);
  if (slices.size() > 2) n->c = std::move(slices[2]);
  return n;
}

NodePtr Parser::ParseMember(NodePtr object) {
  while (Is(TokenType::kDot) || Is(TokenType::kOpenSquareBracket)) {
    const bool computed = Is(TokenType::kOpenSquareBracket);
    ++pos_;
    auto n = MakeNode(NodeKind::kMember);
    n->flag = computed;
    if (computed) {
      n->b = ParseMemberArgs();
      Expect(TokenType::kCloseSquareBracket, "Expected closing square bracket");
    } else {
      n->b = ParsePrimary();
      if (n->b->kind != NodeKind::kIdentifier && n->b->kind != NodeKind::kIntLiteral) {
        Error("Expected identifier or integer following dot operator");
      }
    }
    n->a = std::move(object);
    object = std::move(n);
  }
  return object;
}

NodePtr Parser::ParsePrimary() {
  if (pos_ >= tokens_.size()) Error("Unexpected end of template");
  const Token& t = tokens_[pos_++];
  switch (t.type) {
    case TokenType::kNumericLiteral: {
      const bool is_float = t.value.find('.') != std::string::npos;
      auto n = MakeNode(is_float ? NodeKind::kFloatLiteral : NodeKind::kIntLiteral);
      n->number = std::stod(t.value);
      return n;
    }
    case TokenType::kStringLiteral: {
      auto n = MakeNode(NodeKind::kStringLiteral);
      n->name = t.value;
      while (Is(TokenType::kStringLiteral)) n->name += tokens_[pos_++].value;
      return n;
    }
    case TokenType::kIdentifier: {
      auto n = MakeNode(NodeKind::kIdentifier);
      n->name = t.value;
      return n;
    }
    case TokenType::kOpenParen: {
      NodePtr e = ParseExpressionSequence(false);
      Expect(TokenType::kCloseParen, "Expected closing parenthesis");
      return e;
    }
    case TokenType::kOpenSquareBracket: {
      auto n = MakeNode(NodeKind::kArrayLiteral);
      while (!Is(TokenType::kCloseSquareBracket)) {
        if (pos_ >= tokens_.size()) Error("Expected closing square bracket");
        n->args.push_back(ParseExpression());
        if (Is(TokenType::kComma)) ++pos_;
      }
      ++pos_;
      return n;
    }
    case TokenType::kOpenCurlyBracket: {
      auto n = MakeNode(NodeKind::kObjectLiteral);
      while (!Is(TokenType::kCloseCurlyBracket)) {
        if (pos_ >= tokens_.size()) Error("Expected closing curly bracket");
        NodePtr key = ParseExpression();
        Expect(TokenType::kColon, "Expected colon between key and value in object literal");
        NodePtr value = ParseExpression();
        n->pairs.emplace_back(std::move(key), std::move(value));
        if (Is(TokenType::kComma)) ++pos_;
      }
      ++pos_;
      return n;
    }
    default:
      Error(absl::StrCat("Unexpected token: ", TokenTypeName(t.type)));
  }
}

}  // namespace

namespace {

// Calls `fn(child)` for every direct child of `n`.
template <typename Fn>
void ForEachChild(Node& n, Fn&& fn) {
  for (NodePtr* child : {&n.a, &n.b, &n.c}) fn(*child);
  for (NodeList* list : {&n.args, &n.body, &n.alt, &n.filter.args}) {
    for (NodePtr& child : *list) fn(child);
  }
  for (auto& [k, v] : n.pairs) {
    fn(k);
    fn(v);
  }
}

}  // namespace

Node::~Node() {
  std::vector<NodePtr> pending;
  ForEachChild(*this, [&](NodePtr& child) {
    if (child) pending.push_back(std::move(child));
  });
  while (!pending.empty()) {
    NodePtr n = std::move(pending.back());
    pending.pop_back();
    ForEachChild(*n, [&](NodePtr& child) {
      if (child) pending.push_back(std::move(child));
    });
  }  // each `n` is destroyed here with no children left
}

int TreeHeight(const NodeList& program) {
  int height = 0;
  std::vector<std::pair<Node*, int>> stack;
  for (const NodePtr& n : program) stack.emplace_back(n.get(), 1);
  while (!stack.empty()) {
    Node* n = stack.back().first;
    const int level = stack.back().second;
    stack.pop_back();
    height = std::max(height, level);
    ForEachChild(*n, [&](NodePtr& child) {
      if (child) stack.emplace_back(child.get(), level + 1);
    });
  }
  return height;
}

absl::StatusOr<NodeList> ParseTokens(const std::vector<Token>& tokens) {
  try {
    NodeList program = Parser(tokens).Run();
    // Operator and member chains are parsed by loops, not recursion, but still make deep trees:
    // bound them too, so that validating and evaluating stay within the stack.
    if (const int height = TreeHeight(program); height > kMaxEvalDepth / 2) {
      return absl::InvalidArgumentError(absl::StrCat("jinja: parse error: expression nesting of ",
                                                     height, " exceeds the limit of ",
                                                     kMaxEvalDepth / 2, " levels"));
    }
    return program;
  } catch (const ParseError& e) {
    return absl::InvalidArgumentError(absl::StrCat("jinja: parse error: ", e.message));
  }
}

}  // namespace muse::jinja
