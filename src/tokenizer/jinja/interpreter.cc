#include "src/tokenizer/jinja/interpreter.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "src/tokenizer/jinja/builtins.h"
#include "src/tokenizer/jinja/unicode.h"

namespace muse::jinja {
namespace {

struct BreakSignal {};
struct ContinueSignal {};

bool IsNumericLike(const Value& v) { return v.is_number() || v.kind == Kind::kBool; }
double NumericValue(const Value& v) {
  return v.kind == Kind::kBool ? (v.boolean ? 1 : 0) : v.number;
}

// Whether a macro body reads `kwargs` / `varargs` without declaring them
// (findAccessedSpecialMacroArguments).
void FindSpecialNames(const Node& node, bool* kwargs, bool* varargs) {
  if (node.kind == NodeKind::kIdentifier) {
    if (node.name == "kwargs") *kwargs = true;
    if (node.name == "varargs") *varargs = true;
    return;
  }
  if (node.kind == NodeKind::kMember && !node.flag) {
    FindSpecialNames(*node.a, kwargs, varargs);
    return;
  }
  for (const Node* child : {node.a.get(), node.b.get(), node.c.get()}) {
    if (child) FindSpecialNames(*child, kwargs, varargs);
  }
  for (const NodeList* list : {&node.args, &node.body, &node.alt, &node.filter.args}) {
    for (const auto& child : *list) FindSpecialNames(*child, kwargs, varargs);
  }
  for (const auto& [k, v] : node.pairs) {
    FindSpecialNames(*k, kwargs, varargs);
    FindSpecialNames(*v, kwargs, varargs);
  }
}

}  // namespace

std::string Interpreter::Run(const NodeList& program, const EnvPtr& global) {
  struct ClearMutated {
    std::vector<std::shared_ptr<ObjectMap>>* objects;
    ~ClearMutated() {
      for (const auto& o : *objects) o->Clear();
      objects->clear();
    }
  } clear{&mutated_};
  depth_ = 0;
  fuel_ = 0;
  try {
    return EvalBlock(program, global);
  } catch (const BreakSignal&) {
    Fail("'break' outside of a loop");
  } catch (const ContinueSignal&) {
    Fail("'continue' outside of a loop");
  }
}

std::string Interpreter::EvalBlock(const NodeList& statements, const EnvPtr& env) {
  std::string out;
  for (const auto& statement : statements) {
    const Value v = Eval(*statement, env);
    if (!v.is_null() && !v.is_undefined()) {
      const std::string s = v.ToString();
      CheckStringSize(out.size() + s.size(), "template output");
      out += s;
    }
  }
  return out;
}

void Interpreter::Charge(int64_t fuel) {
  fuel_ += fuel;
  if (fuel_ > kMaxRenderFuel) {
    Fail(absl::StrCat("template exceeds its evaluation budget (", kMaxRenderFuel, " steps)"));
  }
}

Value Interpreter::Eval(const Node& node, const EnvPtr& env) {
  if (depth_ >= kMaxEvalDepth) {
    Fail(absl::StrCat("template nesting or macro recursion exceeds ", kMaxEvalDepth, " levels"));
  }
  ++depth_;
  struct Leave {
    int* depth;
    ~Leave() { --*depth; }
  } leave{&depth_};
  Value v = EvalNode(node, env);
  int64_t cost = 1;
  if (v.is_string()) {
    CheckStringSize(v.str.size(), "expression");
    cost += static_cast<int64_t>(v.str.size() / 16);
  } else if (v.is_array()) {
    cost += static_cast<int64_t>(v.array->size());
  }
  Charge(cost);
  return v;
}

Value Interpreter::EvalNode(const Node& node, const EnvPtr& env) {
  switch (node.kind) {
    case NodeKind::kText:
    case NodeKind::kStringLiteral:
      return Value::String(node.name);
    case NodeKind::kComment:
      return Value::Null();
    case NodeKind::kSet:
      return EvalSet(node, env);
    case NodeKind::kIf: {
      const bool test = Eval(*node.a, env).Truthy();
      return Value::String(EvalBlock(test ? node.body : node.alt, env));
    }
    case NodeKind::kFor:
      return EvalFor(node, env);
    case NodeKind::kBreak:
      throw BreakSignal{};
    case NodeKind::kContinue:
      throw ContinueSignal{};
    case NodeKind::kMacro:
      return EvalMacro(node, env);
    case NodeKind::kCallStatement:
      return EvalCallStatement(node, env);
    case NodeKind::kFilterStatement:
      return ApplyFilter(Value::String(EvalBlock(node.body, env)), node.filter, env);
    case NodeKind::kIntLiteral:
      return Value::Int(node.number);
    case NodeKind::kFloatLiteral:
      return Value::Float(node.number);
    case NodeKind::kArrayLiteral:
    case NodeKind::kTupleLiteral: {
      Array items;
      for (const auto& item : node.args) items.push_back(Eval(*item, env));
      return node.kind == NodeKind::kArrayLiteral ? Value::MakeArray(std::move(items))
                                                  : Value::MakeTuple(std::move(items));
    }
    case NodeKind::kObjectLiteral: {
      ObjectMap map;
      for (const auto& [k, v] : node.pairs) {
        const Value key = Eval(*k, env);
        if (!key.is_string())
          Fail(absl::StrCat("Object keys must be strings: got ", key.TypeName()));
        map.Set(key.str, Eval(*v, env));
      }
      return Value::MakeObject(std::move(map));
    }
    case NodeKind::kIdentifier:
      return env->Lookup(node.name);
    case NodeKind::kCall:
      return EvalCall(node, env);
    case NodeKind::kMember:
      return EvalMember(node, env);
    case NodeKind::kUnary:
      return EvalUnary(node, env);
    case NodeKind::kBinary:
      return EvalBinary(node, env);
    case NodeKind::kFilter:
      return ApplyFilter(Eval(*node.a, env), node.filter, env);
    case NodeKind::kTest: {
      const bool result = RunTest(node.name, Eval(*node.a, env));
      return Value::Bool(node.flag ? !result : result);
    }
    case NodeKind::kSelect:
      if (!Eval(*node.b, env).Truthy()) return Value::Undefined();
      return Eval(*node.a, env);
    case NodeKind::kTernary:
      return Eval(*node.a, env).Truthy() ? Eval(*node.b, env) : Eval(*node.c, env);
    case NodeKind::kSlice:
    case NodeKind::kKwarg:
    case NodeKind::kSpread:
    case NodeKind::kKwSpread:
      break;
  }
  Fail("Unknown node type");
}

Value Interpreter::EvalBinary(const Node& node, const EnvPtr& env) {
  const std::string& op = node.name;
  const Value left = Eval(*node.a, env);
  if (op == "and") return left.Truthy() ? Eval(*node.b, env) : left;
  if (op == "or") return left.Truthy() ? left : Eval(*node.b, env);
  const Value right = Eval(*node.b, env);
  if (op == "==") return Value::Bool(LooseEquals(left, right));
  if (op == "!=") return Value::Bool(!LooseEquals(left, right));

  if (left.is_undefined() || right.is_undefined()) {
    if (right.is_undefined() && (op == "in" || op == "not in")) return Value::Bool(op == "not in");
    Fail(absl::StrCat("Cannot perform operation ", op, " on undefined values"));
  } else if (left.is_null() || right.is_null()) {
    Fail("Cannot perform operation on null values");
  } else if (op == "~") {
    return Value::String(RawToString(left) + RawToString(right));
  } else if (op == "**" && IsNumericLike(left) && IsNumericLike(right)) {
    const double a = NumericValue(left), b = NumericValue(right);
    if (a == 0 && b < 0) Fail("0.0 cannot be raised to a negative power");
    const double result = std::pow(a, b);
    if (!std::isfinite(result)) Fail("Exponentiation result is not a finite real number");
    const bool is_float = left.kind == Kind::kFloat || right.kind == Kind::kFloat || b < 0;
    return is_float ? Value::Float(result) : Value::Int(result);
  } else if (left.is_number() && right.is_number()) {
    const double a = left.number, b = right.number;
    const bool is_float = left.kind == Kind::kFloat || right.kind == Kind::kFloat;
    auto num = [is_float](double r) { return is_float ? Value::Float(r) : Value::Int(r); };
    if (op == "+") return num(a + b);
    if (op == "-") return num(a - b);
    if (op == "*") return num(a * b);
    if (op == "/") return Value::Float(a / b);
    if (op == "//") return num(std::floor(a / b));
    if (op == "%") return num(std::fmod(a, b));
    if (op == "<") return Value::Bool(a < b);
    if (op == ">") return Value::Bool(a > b);
    if (op == ">=") return Value::Bool(a >= b);
    if (op == "<=") return Value::Bool(a <= b);
  } else if (left.is_array() && right.is_array()) {
    if (op == "+") {
      Array joined = *left.array;
      joined.insert(joined.end(), right.array->begin(), right.array->end());
      return Value::MakeArray(std::move(joined));
    }
  } else if (right.is_array()) {
    bool member = false;
    for (const Value& x : *right.array) member = member || StrictEquals(x, left);
    if (op == "in") return Value::Bool(member);
    if (op == "not in") return Value::Bool(!member);
  }
  if ((left.is_string() || right.is_string()) && op == "+") {
    return Value::String(RawToString(left) + RawToString(right));
  }
  if (left.is_string() && right.is_string()) {
    if (op == "in") return Value::Bool(right.str.find(left.str) != std::string::npos);
    if (op == "not in") return Value::Bool(right.str.find(left.str) == std::string::npos);
  }
  if (left.is_string() && right.is_object()) {
    if (op == "in") return Value::Bool(right.object->Find(left.str) != nullptr);
    if (op == "not in") return Value::Bool(right.object->Find(left.str) == nullptr);
  }
  Fail(absl::StrCat("Unknown operator \"", op, "\" between ", left.TypeName(), " and ",
                    right.TypeName()));
}

Value Interpreter::EvalUnary(const Node& node, const EnvPtr& env) {
  const Value arg = Eval(*node.a, env);
  if (node.name == "not") return Value::Bool(!arg.Truthy());
  if (IsNumericLike(arg)) {
    const double r = (node.name == "-" ? -1 : 1) * NumericValue(arg);
    return arg.kind == Kind::kFloat ? Value::Float(r) : Value::Int(r);
  }
  Fail(absl::StrCat("Unknown operator \"", node.name, "\" for ", arg.TypeName()));
}

Value Interpreter::EvalSlice(const Value& object, const Node& slice, const EnvPtr& env) {
  if (!object.is_array() && !object.is_string()) Fail("Slice object must be an array or string");
  auto part = [&](const NodePtr& n, const char* what) {
    Value v = n ? Eval(*n, env) : Value::Undefined();
    if (!v.is_int() && !v.is_undefined())
      Fail(absl::StrCat("Slice ", what, " must be numeric or undefined"));
    return v;
  };
  const Value start = part(slice.a, "start"), stop = part(slice.b, "stop"),
              step = part(slice.c, "step");
  if (object.is_array()) {
    Array out;
    for (size_t i : SliceIndices(object.array->size(), start, stop, step))
      out.push_back((*object.array)[i]);
    return Value::MakeArray(std::move(out));
  }
  const std::vector<uint32_t> cps = DecodeUtf8(object.str);  // Array.from(string): code points
  std::string out;
  for (size_t i : SliceIndices(cps.size(), start, stop, step)) AppendUtf8(out, cps[i]);
  return Value::String(out);
}

Value Interpreter::EvalMember(const Node& node, const EnvPtr& env) {
  const Value object = Eval(*node.a, env);
  Value property;
  if (node.flag) {
    if (node.b->kind == NodeKind::kSlice) return EvalSlice(object, *node.b, env);
    property = Eval(*node.b, env);
  } else if (node.b->kind == NodeKind::kIntLiteral) {
    property = Value::Int(node.b->number);
  } else {
    property = Value::String(node.b->name);
  }
  if (object.is_attribute_container()) {
    if (!property.is_string())
      Fail(absl::StrCat("Cannot access property with non-string: got ", property.TypeName()));
    if (const Value* v = object.object->Find(property.str)) return *v;
    return object.is_object() ? BuiltinMember(object, property.str) : Value::Undefined();
  }
  if (object.is_array() || object.is_string()) {
    if (property.is_int()) {
      // Array.prototype.at(): negative indices count from the end.
      const std::vector<uint32_t> cps =
          object.is_string() ? DecodeUtf8(object.str) : std::vector<uint32_t>{};
      const long size = static_cast<long>(object.is_array() ? object.array->size() : cps.size());
      long index = static_cast<long>(std::trunc(property.number));
      if (index < 0) index += size;
      if (index < 0 || index >= size) return Value::Undefined();
      if (object.is_array()) return (*object.array)[index];
      std::string ch;
      AppendUtf8(ch, cps[index]);
      return Value::String(ch);
    }
    if (property.is_string()) return BuiltinMember(object, property.str);
    Fail(absl::StrCat("Cannot access property with non-string/non-number: got ",
                      property.TypeName()));
  }
  if (!property.is_string())
    Fail(absl::StrCat("Cannot access property with non-string: got ", property.TypeName()));
  return BuiltinMember(object, property.str);
}

Interpreter::Arguments Interpreter::EvalArguments(const NodeList& args, const EnvPtr& env) {
  Arguments out;
  for (const auto& arg : args) {
    if (arg->kind == NodeKind::kSpread) {
      const Value v = Eval(*arg->a, env);
      if (!v.is_array()) Fail(absl::StrCat("Cannot unpack non-iterable type: ", v.TypeName()));
      for (const Value& item : *v.array) out.positional.push_back(item);
    } else if (arg->kind != NodeKind::kKwarg && arg->kind != NodeKind::kKwSpread) {
      out.positional.push_back(Eval(*arg, env));
    }
  }
  auto add = [&](const std::string& key, Value v) {
    if (out.keywords.Find(key))
      Fail(absl::StrCat("Got multiple values for keyword argument '", key, "'"));
    out.keywords.Set(key, std::move(v));
  };
  for (const auto& arg : args) {
    if (arg->kind == NodeKind::kKwarg) {
      add(arg->name, Eval(*arg->a, env));
    } else if (arg->kind == NodeKind::kKwSpread) {
      const Value v = Eval(*arg->a, env);
      if (!v.is_object())
        Fail(absl::StrCat("Argument after ** must be a mapping, not ", v.TypeName()));
      for (const auto& [k, item] : v.object->entries()) add(k, item);
    }
  }
  return out;
}

Value Interpreter::EvalCall(const Node& node, const EnvPtr& env) {
  Arguments args = EvalArguments(node.args, env);
  if (args.keywords.size() > 0) {
    args.positional.push_back(Value::MakeObject(std::move(args.keywords), Kind::kKwargs));
  }
  const Value fn = Eval(*node.a, env);
  if (fn.kind != Kind::kFunction) {
    Fail(absl::StrCat("Cannot call something that is not a function: got ", fn.TypeName()));
  }
  return (*fn.fn)(args.positional, env);
}

Value Interpreter::EvalSet(const Node& node, const EnvPtr& env) {
  const Value rhs = node.b ? Eval(*node.b, env) : Value::String(EvalBlock(node.body, env));
  const Node& target = *node.a;
  if (target.kind == NodeKind::kIdentifier) {
    env->Set(target.name, rhs);
  } else if (target.kind == NodeKind::kTupleLiteral) {
    if (!rhs.is_array())
      Fail(absl::StrCat("Cannot unpack non-iterable type in set: ", rhs.TypeName()));
    if (rhs.array->size() != target.args.size()) {
      Fail(absl::StrCat("Too ", target.args.size() > rhs.array->size() ? "few" : "many",
                        " items to unpack in set"));
    }
    for (size_t i = 0; i < target.args.size(); ++i) {
      if (target.args[i]->kind != NodeKind::kIdentifier)
        Fail("Cannot unpack to non-identifier in set");
      env->Set(target.args[i]->name, (*rhs.array)[i]);
    }
  } else if (target.kind == NodeKind::kMember) {
    const Value object = Eval(*target.a, env);
    if (object.kind != Kind::kNamespace) Fail("cannot assign attribute on non-namespace object");
    if (target.flag || target.b->kind != NodeKind::kIdentifier) {
      Fail("Cannot assign to member with non-identifier property");
    }
    // Namespaces are the only mutable containers: refuse a value that contains the namespace
    // itself (a cycle) or nests too deep, walking it once (charged as fuel).
    std::vector<std::pair<const Value*, int>> stack{{&rhs, 1}};
    while (!stack.empty()) {
      const auto [v, level] = stack.back();
      stack.pop_back();
      Charge(1);
      if (level > kMaxValueDepth) {
        Fail(absl::StrCat("value nesting exceeds the limit of ", kMaxValueDepth, " levels"));
      }
      if (v->object && v->object == object.object) Fail("cannot assign a namespace into itself");
      if (v->array) {
        for (const Value& item : *v->array) stack.emplace_back(&item, level + 1);
      } else if (v->object) {
        for (const auto& entry : v->object->entries()) stack.emplace_back(&entry.second, level + 1);
      }
    }
    object.object->Set(target.b->name, rhs);
    if (mutated_.empty() || mutated_.back() != object.object) mutated_.push_back(object.object);
  } else {
    Fail("Invalid LHS inside assignment expression");
  }
  return Value::Null();
}

Value Interpreter::EvalFor(const Node& node, const EnvPtr& env) {
  const EnvPtr scope = Environment::Child(env);
  const Node* test = nullptr;
  Value iterable;
  if (node.b->kind == NodeKind::kSelect) {
    iterable = Eval(*node.b->a, scope);
    test = node.b->b.get();
  } else {
    iterable = Eval(*node.b, scope);
  }
  if (!iterable.is_array() && !iterable.is_object()) {
    Fail(absl::StrCat("Expected iterable or object type in for loop: got ", iterable.TypeName()));
  }
  if (iterable.is_object()) iterable = ObjectKeys(iterable);

  const Node& loopvar = *node.a;
  auto bind = [&loopvar](const EnvPtr& target, const Value& current) {
    if (loopvar.kind == NodeKind::kIdentifier) {
      target->Set(loopvar.name, current);
      return;
    }
    for (size_t j = 0; j < loopvar.args.size(); ++j) {
      if (loopvar.args[j]->kind != NodeKind::kIdentifier) Fail("Cannot unpack non-identifier type");
      target->Set(loopvar.args[j]->name, (*current.array)[j]);
    }
  };
  Array items;
  for (const Value& current : *iterable.array) {
    if (loopvar.kind == NodeKind::kTupleLiteral) {
      if (current.kind != Kind::kArray)
        Fail(absl::StrCat("Cannot unpack non-iterable type: ", current.TypeName()));
      if (current.array->size() != loopvar.args.size()) {
        Fail(absl::StrCat("Too ", loopvar.args.size() > current.array->size() ? "few" : "many",
                          " items to unpack"));
      }
    }
    if (test) {
      const EnvPtr loop_scope = Environment::Child(scope);
      bind(loop_scope, current);
      if (!Eval(*test, loop_scope).Truthy()) continue;
    }
    items.push_back(current);
  }

  std::string result;
  bool no_iteration = true;
  const size_t n = items.size();
  for (size_t i = 0; i < n; ++i) {
    ObjectMap loop;
    loop.Set("index", Value::Int(static_cast<double>(i + 1)));
    loop.Set("index0", Value::Int(static_cast<double>(i)));
    loop.Set("revindex", Value::Int(static_cast<double>(n - i)));
    loop.Set("revindex0", Value::Int(static_cast<double>(n - i - 1)));
    loop.Set("first", Value::Bool(i == 0));
    loop.Set("last", Value::Bool(i == n - 1));
    loop.Set("length", Value::Int(static_cast<double>(n)));
    loop.Set("previtem", i > 0 ? items[i - 1] : Value::Undefined());
    loop.Set("nextitem", i + 1 < n ? items[i + 1] : Value::Undefined());
    scope->Set("loop", Value::MakeObject(std::move(loop)));
    bind(scope, items[i]);
    Charge(10);  // the loop object and bindings cost about ten evaluations
    try {
      const std::string part = EvalBlock(node.body, scope);
      CheckStringSize(result.size() + part.size(), "for loop output");
      result += part;
    } catch (const ContinueSignal&) {
      continue;
    } catch (const BreakSignal&) {
      break;
    }
    no_iteration = false;
  }
  if (no_iteration) result += EvalBlock(node.alt, scope);
  return Value::String(result);
}

void Interpreter::BindMacroArguments(const std::string& display_name, const NodeList& parameters,
                                     bool uses_kwargs, bool uses_varargs, std::vector<Value> args,
                                     const EnvPtr& scope) {
  ObjectMap keywords;
  if (!args.empty() && args.back().kind == Kind::kKwargs) {
    keywords = *args.back().object;
    args.pop_back();
  }
  std::vector<std::pair<std::string, const Node*>> pending_defaults;
  for (size_t i = 0; i < parameters.size(); ++i) {
    const Node& p = *parameters[i];
    const std::string& name = p.name;
    const Node* default_value = p.kind == NodeKind::kKwarg ? p.a.get() : nullptr;
    Value value;
    bool present = i < args.size();
    if (present) value = args[i];
    if (!present) {
      if (const Value* kw = keywords.Find(name)) {
        value = *kw;
        keywords.Erase(name);
        present = true;
      }
    }
    if (!present && default_value) pending_defaults.emplace_back(name, default_value);
    scope->Set(name, value);
  }
  if (uses_kwargs) {
    scope->Set("kwargs", Value::MakeObject(std::move(keywords)));
  } else if (keywords.size() > 0) {
    Fail(absl::StrCat("macro ", display_name, " takes no keyword argument '",
                      keywords.entries()[0].first, "'"));
  }
  if (uses_varargs) {
    Array rest;
    for (size_t i = parameters.size(); i < args.size(); ++i) rest.push_back(args[i]);
    scope->Set("varargs", Value::MakeArray(std::move(rest)));
  } else if (args.size() > parameters.size()) {
    Fail(absl::StrCat("macro ", display_name, " takes not more than ", parameters.size(),
                      " argument(s)"));
  }
  for (const auto& [name, default_value] : pending_defaults)
    scope->Set(name, Eval(*default_value, scope));
}

Value Interpreter::EvalMacro(const Node& node, const EnvPtr& env) {
  bool uses_kwargs = false, uses_varargs = false;
  for (const auto& s : node.body) FindSpecialNames(*s, &uses_kwargs, &uses_varargs);
  for (const auto& p : node.args) {
    if (p->name == "kwargs") uses_kwargs = false;
    if (p->name == "varargs") uses_varargs = false;
  }
  const Node* macro = &node;
  env->Set(node.name, Value::Function([this, macro, uses_kwargs, uses_varargs](
                                          std::vector<Value>& args, const EnvPtr& call_env) {
             const EnvPtr scope = Environment::Child(
                 call_env);  // macros see the caller's scope, as in the reference
             BindMacroArguments(absl::StrCat("'", macro->name, "'"), macro->args, uses_kwargs,
                                uses_varargs, args, scope);
             return Value::String(EvalBlock(macro->body, scope));
           }));
  return Value::Null();
}

Value Interpreter::EvalCallStatement(const Node& node, const EnvPtr& env) {
  bool uses_kwargs = false, uses_varargs = false;
  for (const auto& s : node.body) FindSpecialNames(*s, &uses_kwargs, &uses_varargs);
  for (const auto& p : node.args) {
    if (p->name == "kwargs") uses_kwargs = false;
    if (p->name == "varargs") uses_varargs = false;
  }
  const Node* call_node = &node;
  const Value caller = Value::Function(
      [this, call_node, env, uses_kwargs, uses_varargs](std::vector<Value>& args, const EnvPtr&) {
        const EnvPtr scope = Environment::Child(env);
        BindMacroArguments("None", call_node->args, uses_kwargs, uses_varargs, args, scope);
        return Value::String(EvalBlock(call_node->body, scope));
      });
  Arguments args = EvalArguments(node.a->args, env);
  args.positional.push_back(Value::MakeObject(std::move(args.keywords), Kind::kKwargs));
  const Value fn = Eval(*node.a->a, env);
  if (fn.kind != Kind::kFunction) {
    Fail(absl::StrCat("Cannot call something that is not a function: got ", fn.TypeName()));
  }
  const EnvPtr call_env = Environment::Child(env);
  call_env->Set("caller", caller);
  return (*fn.fn)(args.positional, call_env);
}

}  // namespace muse::jinja
