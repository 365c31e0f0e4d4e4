#include "src/tokenizer/jinja/validate.h"

#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "src/tokenizer/jinja/builtins.h"

namespace muse::jinja {
namespace {

bool IsKnownFilter(const std::string& name) {
  static const std::set<std::string> kFilters = {
      "safe",       "tojson",  "list",     "first",  "last",       "length",     "reverse",
      "sort",       "join",    "string",   "unique", "upper",      "lower",      "title",
      "capitalize", "trim",    "indent",   "int",    "float",      "abs",        "items",
      "keys",       "values",  "dictsort", "bool",   "selectattr", "rejectattr", "map",
      "default",    "replace", "round",    "select", "reject"};
  return kFilters.count(name) > 0;
}

class Validator {
 public:
  absl::Status Run(const NodeList& program) {
    for (const auto& n : program) CollectNames(*n);
    for (const auto& n : program) {
      Check(*n);
      if (!status_.ok()) break;
    }
    return status_;
  }

 private:
  // Names that may hold a callable: macros, their parameters, and assigned variables.
  void CollectNames(const Node& node) {
    if (node.kind == NodeKind::kMacro) {
      callable_names_.insert(node.name);
      for (const auto& p : node.args) callable_names_.insert(p->name);
    }
    if (node.kind == NodeKind::kCallStatement) {
      for (const auto& p : node.args) callable_names_.insert(p->name);
    }
    if ((node.kind == NodeKind::kSet || node.kind == NodeKind::kFor) && node.a) {
      if (node.a->kind == NodeKind::kIdentifier) callable_names_.insert(node.a->name);
      for (const auto& t : node.a->args) callable_names_.insert(t->name);
    }
    ForEachChild(node, [this](const Node& c) { CollectNames(c); });
  }

  template <typename F>
  static void ForEachChild(const Node& node, F f) {
    for (const Node* child : {node.a.get(), node.b.get(), node.c.get()}) {
      if (child) f(*child);
    }
    for (const NodeList* list : {&node.args, &node.body, &node.alt, &node.filter.args}) {
      for (const auto& child : *list) f(*child);
    }
    for (const auto& [k, v] : node.pairs) {
      f(*k);
      f(*v);
    }
  }

  void Error(const std::string& message) {
    if (status_.ok())
      status_ = absl::InvalidArgumentError(absl::StrCat("jinja: unsupported template: ", message));
  }

  void CheckFilter(const FilterRef& filter) {
    if (!IsKnownFilter(filter.name)) {
      Error(absl::StrCat("unknown filter '", filter.name, "'"));
      return;
    }
    if (filter.name == "selectattr" || filter.name == "rejectattr") {
      if (!filter.is_call || filter.args.empty())
        Error(absl::StrCat("filter '", filter.name, "' needs arguments"));
      for (const auto& a : filter.args) {
        if (a->kind != NodeKind::kStringLiteral) {
          Error(absl::StrCat("arguments of filter '", filter.name, "' must be string literals"));
        }
      }
      if (filter.args.size() > 1 && !IsKnownTest(filter.args[1]->name)) {
        Error(absl::StrCat("unknown test '", filter.args[1]->name, "' in ", filter.name));
      }
    }
    if (filter.name == "select" || filter.name == "reject") {
      if (filter.is_call && !filter.args.empty()) {
        const Node& test = *filter.args[0];
        if (test.kind != NodeKind::kStringLiteral || !IsKnownTest(test.name)) {
          Error(absl::StrCat("filter '", filter.name,
                             "' needs a known test name as a string literal"));
        }
      }
    }
    if (filter.name == "map") {
      bool has_attribute = false;
      for (const auto& a : filter.args)
        has_attribute |= a->kind == NodeKind::kKwarg && a->name == "attribute";
      if (!has_attribute) Error("filter 'map' is only supported with attribute=...");
    }
  }

  void Check(const Node& node) {
    switch (node.kind) {
      case NodeKind::kFilter:
      case NodeKind::kFilterStatement:
        CheckFilter(node.filter);
        break;
      case NodeKind::kTest:
        if (!IsKnownTest(node.name)) Error(absl::StrCat("unknown test '", node.name, "'"));
        if (node.name == "equalto" || node.name == "eq") {
          Error(absl::StrCat("test '", node.name,
                             "' needs an argument, which is not supported outside selectattr"));
        }
        break;
      case NodeKind::kCall: {
        const Node& callee = *node.a;
        if (callee.kind == NodeKind::kIdentifier) {
          if (!IsGlobalFunction(callee.name) && callee.name != "caller" &&
              !callable_names_.count(callee.name)) {
            Error(absl::StrCat("unknown function '", callee.name, "()'"));
          }
        } else if (callee.kind == NodeKind::kMember && !callee.flag &&
                   callee.b->kind == NodeKind::kIdentifier) {
          if (!IsKnownMethod(callee.b->name) && !callable_names_.count(callee.b->name)) {
            Error(absl::StrCat("unsupported method '.", callee.b->name, "()'"));
          }
        }
        break;
      }
      default:
        break;
    }
    ForEachChild(node, [this](const Node& c) { Check(c); });
  }

  std::set<std::string> callable_names_;
  absl::Status status_;
};

}  // namespace

absl::Status ValidateProgram(const NodeList& program) { return Validator().Run(program); }

}  // namespace muse::jinja
