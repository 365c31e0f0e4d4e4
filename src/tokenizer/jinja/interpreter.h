// Tree-walking evaluator: a port of @huggingface/jinja's Interpreter. Errors are thrown as
// RenderError internally and converted to absl::Status by ChatTemplate.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "src/tokenizer/jinja/ast.h"
#include "src/tokenizer/jinja/environment.h"
#include "src/tokenizer/jinja/value.h"

namespace muse::jinja {

class Interpreter {
 public:
  // Renders the program; the AST must outlive the call (macros keep pointers into it).
  std::string Run(const NodeList& program, const EnvPtr& global);

 private:
  struct Arguments {
    std::vector<Value> positional;
    ObjectMap keywords;
  };

  // Evaluates one node within the render's limits (depth, fuel, string size; value.h).
  Value Eval(const Node& node, const EnvPtr& env);
  Value EvalNode(const Node& node, const EnvPtr& env);
  void Charge(int64_t fuel);
  std::string EvalBlock(const NodeList& statements, const EnvPtr& env);
  Value EvalBinary(const Node& node, const EnvPtr& env);
  Value EvalUnary(const Node& node, const EnvPtr& env);
  Value EvalMember(const Node& node, const EnvPtr& env);
  Value EvalSlice(const Value& object, const Node& slice, const EnvPtr& env);
  Value EvalCall(const Node& node, const EnvPtr& env);
  Value EvalSet(const Node& node, const EnvPtr& env);
  Value EvalFor(const Node& node, const EnvPtr& env);
  Value EvalMacro(const Node& node, const EnvPtr& env);
  Value EvalCallStatement(const Node& node, const EnvPtr& env);
  Arguments EvalArguments(const NodeList& args, const EnvPtr& env);
  void BindMacroArguments(const std::string& display_name, const NodeList& parameters,
                          bool uses_kwargs, bool uses_varargs, std::vector<Value> args,
                          const EnvPtr& scope);
  // filters.cc
  Value ApplyFilter(const Value& operand, const FilterRef& filter, const EnvPtr& env);
  Value ApplyCallFilter(const Value& operand, const FilterRef& filter, const EnvPtr& env);

  int depth_ = 0;
  int64_t fuel_ = 0;
  // Namespaces assigned to during the render. Their attributes are cleared when Run returns, which
  // breaks any reference cycle through them (a namespace holding a `caller` that sees it).
  std::vector<std::shared_ptr<ObjectMap>> mutated_;
};

}  // namespace muse::jinja
