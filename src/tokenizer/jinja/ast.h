// Syntax tree of a chat template. One node type with named slots; each kind documents
// which slots it uses (mirrors the node classes of @huggingface/jinja's ast.ts).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace muse::jinja {

enum class NodeKind {
  // Statements.
  kText,     // name: the text
  kComment,  // (renders nothing)
  kSet,      // a: target (Identifier, Tuple or Member), b: value or null, body: block form
  kIf,       // a: test, body, alt (an elif is a nested kIf in alt)
  kFor,      // a: loop variable (Identifier or Tuple), b: iterable, body, alt: else block
  kBreak,
  kContinue,
  kMacro,            // name, args: parameters (Identifier or Kwarg), body
  kCallStatement,    // a: kCall of the macro, args: caller parameters, body
  kFilterStatement,  // filter, body
  // Expressions.
  kIntLiteral,     // number
  kFloatLiteral,   // number
  kStringLiteral,  // name: the value
  kArrayLiteral,   // args: items
  kTupleLiteral,   // args: items
  kObjectLiteral,  // pairs
  kIdentifier,     // name
  kCall,           // a: callee, args
  kMember,  // a: object, b: property (kSlice, expression, Identifier or IntLiteral), flag: computed
  kSlice,   // a: start, b: stop, c: step (each may be null)
  kUnary,   // name: operator ("not", "-", "+"), a: operand
  kBinary,  // name: operator, a: left, b: right
  kFilter,  // a: operand, filter
  kTest,    // a: operand, name: test, flag: negated
  kSelect,  // a: value, b: condition (`x if c` without else)
  kTernary,   // a: condition, b: if true, c: if false
  kKwarg,     // name: key, a: value
  kSpread,    // a: *expression
  kKwSpread,  // a: **expression
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using NodeList = std::vector<NodePtr>;

// A filter application: `| name` or `| name(args)`.
struct FilterRef {
  std::string name;
  bool is_call = false;
  NodeList args;
};

struct Node {
  explicit Node(NodeKind k) : kind(k) {}
  // Iterative: a long operator chain (`a ~ b ~ c ~ ...`) is a deep tree, and destroying it
  // recursively could overflow the stack.
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  NodeKind kind;
  std::string name;
  double number = 0;
  bool flag = false;
  NodePtr a, b, c;
  NodeList args;
  NodeList body;
  NodeList alt;
  std::vector<std::pair<NodePtr, NodePtr>> pairs;
  FilterRef filter;
};

inline NodePtr MakeNode(NodeKind kind) { return std::make_unique<Node>(kind); }

// The nesting depth of the deepest node under `program` (1 for a flat list), computed without
// recursion.
int TreeHeight(const NodeList& program);

}  // namespace muse::jinja
