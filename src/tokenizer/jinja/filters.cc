// Filters (`x | name` and `x | name(args)`), dispatched on the operand type exactly as the
// reference's applyFilter does. The load-time check in validate.cc lists the same names.
#include <algorithm>
#include <cmath>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "src/tokenizer/jinja/builtins.h"
#include "src/tokenizer/jinja/interpreter.h"
#include "src/tokenizer/jinja/unicode.h"

namespace muse::jinja {
namespace {

// Key of the reference's `new Set()` over raw values (SameValueZero); containers by identity.
std::string UniqueKey(const Value& v) {
  switch (v.kind) {
    case Kind::kInt:
    case Kind::kFloat:
      return absl::StrCat("n", JsNumberToString(v.number));
    case Kind::kString:
      return absl::StrCat("s", v.str);
    case Kind::kBool:
      return v.boolean ? "true" : "false";
    case Kind::kNull:
      return "null";
    case Kind::kUndefined:
      return "undefined";
    case Kind::kArray:
    case Kind::kTuple:
      return absl::StrCat("p", reinterpret_cast<uintptr_t>(v.array.get()));
    case Kind::kFunction:
      return absl::StrCat("p", reinterpret_cast<uintptr_t>(v.fn.get()));
    default:
      return absl::StrCat("p", reinterpret_cast<uintptr_t>(v.object.get()));
  }
}

// Python round(x, ndigits) with round-half-even, as Jinja's `round` (method='common').
Value Round(const Value& v, int precision) {
  if (v.is_int() && precision >= 0) return v;
  const double scale = std::pow(10.0, precision);
  return Value::Float(std::nearbyint(v.number * scale) / scale);
}

Value NamedArg(const std::vector<Value>& positional, const ObjectMap& keywords, size_t i,
               const char* name, Value fallback) {
  if (i < positional.size()) return positional[i];
  if (const Value* v = keywords.Find(name)) return *v;
  return fallback;
}

}  // namespace

Value Interpreter::ApplyFilter(const Value& operand, const FilterRef& filter, const EnvPtr& env) {
  if (filter.is_call) return ApplyCallFilter(operand, filter, env);
  const std::string& name = filter.name;
  if (name == "safe") return operand;
  if (name == "tojson") return Value::String(ToJson(operand, ToJsonOptions{}, 0, true));
  if (name == "round" && operand.is_number()) return Round(operand, 0);

  if (operand.is_array()) {
    const Array& items = *operand.array;
    if (name == "list") return operand;
    if (name == "first") return items.empty() ? Value::Undefined() : items.front();
    if (name == "last") return items.empty() ? Value::Undefined() : items.back();
    if (name == "length") return Value::Int(static_cast<double>(items.size()));
    if (name == "reverse") return Value::MakeArray(Array(items.rbegin(), items.rend()));
    if (name == "sort") {
      Array sorted = items;
      std::stable_sort(sorted.begin(), sorted.end(), [](const Value& a, const Value& b) {
        return CompareValues(a, b, false) < 0;
      });
      return Value::MakeArray(std::move(sorted));
    }
    if (name == "join") {
      size_t total = 0;
      for (const Value& x : items) total += x.is_string() ? x.str.size() : 0;
      CheckStringSize(total, "join");
      std::string out;
      for (const Value& x : items) out += (x.is_null() || x.is_undefined()) ? "" : RawToString(x);
      return Value::String(out);
    }
    if (name == "string") return Value::String(ToJson(operand, ToJsonOptions{}, 0, false));
    if (name == "unique") {
      std::set<std::string> seen;
      Array out;
      for (const Value& x : items) {
        if (seen.insert(UniqueKey(x)).second) out.push_back(x);
      }
      return Value::MakeArray(std::move(out));
    }
    Fail(absl::StrCat("Unknown ArrayValue filter: ", name));
  }
  if (operand.is_string()) {
    const std::string& s = operand.str;
    if (name == "length") return Value::Int(static_cast<double>(Utf16Length(s)));
    if (name == "upper") return Value::String(JsToUpper(s));
    if (name == "lower") return Value::String(JsToLower(s));
    if (name == "title") return Value::String(JsTitleCase(s));
    if (name == "capitalize") return Value::String(JsCapitalize(s));
    if (name == "trim") return Value::String(JsTrim(s, true, true));
    if (name == "indent") {
      std::string out;
      size_t start = 0;
      for (size_t line = 0;; ++line) {
        const size_t nl = s.find('\n', start);
        const std::string part =
            s.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
        if (line > 0) out += "\n";
        out += (line == 0 || part.empty()) ? part : "    " + part;
        if (nl == std::string::npos) break;
        start = nl + 1;
      }
      return Value::String(out);
    }
    if (name == "join" || name == "string") return operand;
    if (name == "int") {
      // parseInt(s, 10): leading whitespace, optional sign, digits.
      const std::string t = JsTrim(s, true, false);
      size_t i = 0;
      bool neg = false;
      if (i < t.size() && (t[i] == '+' || t[i] == '-')) neg = t[i++] == '-';
      double v = 0;
      const size_t digits_start = i;
      while (i < t.size() && t[i] >= '0' && t[i] <= '9') v = v * 10 + (t[i++] - '0');
      return Value::Int(i == digits_start ? 0 : (neg ? -v : v));
    }
    if (name == "float") {
      const std::string t = JsTrim(s, true, false);
      char* end = nullptr;
      const double v = std::strtod(t.c_str(), &end);
      return Value::Float(end == t.c_str() ? 0.0 : v);
    }
    Fail(absl::StrCat("Unknown StringValue filter: ", name));
  }
  if (operand.is_number()) {
    if (name == "abs") {
      return operand.is_int() ? Value::Int(std::fabs(operand.number))
                              : Value::Float(std::fabs(operand.number));
    }
    if (name == "int") return Value::Int(std::floor(operand.number));
    if (name == "float") return Value::Float(operand.number);
    if (name == "string") return Value::String(operand.ToString());
    Fail(absl::StrCat("Unknown NumericValue filter: ", name));
  }
  if (operand.is_object()) {
    if (name == "items") return ObjectItems(operand);
    if (name == "length") return Value::Int(static_cast<double>(operand.object->size()));
    Value builtin = BuiltinMember(operand, name);
    if (builtin.kind == Kind::kFunction) {
      std::vector<Value> no_args;
      return (*builtin.fn)(no_args, env);
    }
    if (!builtin.is_undefined()) return builtin;
    Fail(absl::StrCat("Unknown ObjectValue filter: ", name));
  }
  if (operand.kind == Kind::kBool) {
    if (name == "bool") return operand;
    if (name == "int") return Value::Int(operand.boolean ? 1 : 0);
    if (name == "float") return Value::Float(operand.boolean ? 1 : 0);
    if (name == "string") return Value::String(operand.boolean ? "true" : "false");
    Fail(absl::StrCat("Unknown BooleanValue filter: ", name));
  }
  Fail(absl::StrCat("Cannot apply filter \"", name, "\" to type: ", operand.TypeName()));
}

Value Interpreter::ApplyCallFilter(const Value& operand, const FilterRef& filter,
                                   const EnvPtr& env) {
  const std::string& name = filter.name;
  if (name == "tojson") {
    const Arguments args = EvalArguments(filter.args, env);
    const Value indent = NamedArg({}, args.keywords, 0, "indent", Value::Null());
    if (!indent.is_int() && !indent.is_null()) Fail("If set, indent must be a number");
    if (indent.is_int() && indent.number > kMaxIndentWidth) {
      Fail(
          absl::StrCat("tojson indent ", indent.number, " exceeds the limit of ", kMaxIndentWidth));
    }
    const Value ensure_ascii = NamedArg({}, args.keywords, 0, "ensure_ascii", Value::Bool(false));
    if (ensure_ascii.kind != Kind::kBool) Fail("If set, ensure_ascii must be a boolean");
    const Value sort_keys = NamedArg({}, args.keywords, 0, "sort_keys", Value::Bool(false));
    if (sort_keys.kind != Kind::kBool) Fail("If set, sort_keys must be a boolean");
    const Value separators = NamedArg({}, args.keywords, 0, "separators", Value::Null());
    ToJsonOptions options;
    options.indent = indent.is_int() ? static_cast<int>(indent.number) : 0;
    options.ensure_ascii = ensure_ascii.boolean;
    options.sort_keys = sort_keys.boolean;
    if (separators.is_array()) {
      if (separators.array->size() != 2 || !(*separators.array)[0].is_string() ||
          !(*separators.array)[1].is_string()) {
        Fail("separators must be a tuple of two strings");
      }
      options.has_separators = true;
      options.item_separator = (*separators.array)[0].str;
      options.key_separator = (*separators.array)[1].str;
    } else if (!separators.is_null()) {
      Fail("If set, separators must be a tuple of two strings");
    }
    return Value::String(ToJson(operand, options, 0, true));
  }
  if (name == "join") {
    std::vector<std::string> parts;
    if (operand.is_string()) {
      for (uint32_t cp : DecodeUtf8(operand.str)) {
        std::string ch;
        AppendUtf8(ch, cp);
        parts.push_back(ch);
      }
    } else if (operand.is_array()) {
      for (const Value& x : *operand.array)
        parts.push_back(x.is_null() || x.is_undefined() ? "" : RawToString(x));
    } else {
      Fail(absl::StrCat("Cannot apply filter \"", name, "\" to type: ", operand.TypeName()));
    }
    const Arguments args = EvalArguments(filter.args, env);
    const Value sep = NamedArg(args.positional, args.keywords, 0, "separator", Value::String(""));
    if (!sep.is_string()) Fail("separator must be a string");
    size_t total = parts.empty() ? 0 : (parts.size() - 1) * sep.str.size();
    for (const std::string& part : parts) total += part.size();
    CheckStringSize(total, "join");
    std::string out;
    for (size_t i = 0; i < parts.size(); ++i) absl::StrAppend(&out, i ? sep.str : "", parts[i]);
    return Value::String(out);
  }
  if (name == "int" || name == "float") {
    const Arguments args = EvalArguments(filter.args, env);
    const bool is_int = name == "int";
    Value fallback = NamedArg(args.positional, args.keywords, 0, "default",
                              is_int ? Value::Int(0) : Value::Float(0));
    if (operand.is_string()) {
      const std::string t = JsTrim(operand.str, true, false);
      char* end = nullptr;
      const double v = is_int ? static_cast<double>(std::strtoll(t.c_str(), &end, 10))
                              : std::strtod(t.c_str(), &end);
      if (end == t.c_str()) return fallback;
      return is_int ? Value::Int(v) : Value::Float(v);
    }
    if (operand.is_number()) return operand;
    if (operand.kind == Kind::kBool)
      return is_int ? Value::Int(operand.boolean) : Value::Float(operand.boolean);
    Fail(absl::StrCat("Cannot apply filter \"", name, "\" to type: ", operand.TypeName()));
  }
  if (name == "default") {
    const Arguments args = EvalArguments(filter.args, env);
    Value fallback = !args.positional.empty() ? args.positional[0] : Value::String("");
    const Value boolean =
        NamedArg(args.positional, args.keywords, 1, "boolean", Value::Bool(false));
    if (boolean.kind != Kind::kBool) Fail("`default` filter flag must be a boolean");
    if (operand.is_undefined() || (boolean.boolean && !operand.Truthy())) return fallback;
    return operand;
  }
  if (name == "round" && operand.is_number()) {
    const Arguments args = EvalArguments(filter.args, env);
    const Value precision = NamedArg(args.positional, args.keywords, 0, "precision", Value::Int(0));
    if (!precision.is_int()) Fail("round precision must be an integer");
    return Round(operand, static_cast<int>(precision.number));
  }

  if (operand.is_array()) {
    const Array& items = *operand.array;
    if (name == "sort") {
      const Arguments args = EvalArguments(filter.args, env);
      const Value reverse =
          NamedArg(args.positional, args.keywords, 0, "reverse", Value::Bool(false));
      if (reverse.kind != Kind::kBool) Fail("reverse must be a boolean");
      const Value case_sensitive =
          NamedArg(args.positional, args.keywords, 1, "case_sensitive", Value::Bool(false));
      if (case_sensitive.kind != Kind::kBool) Fail("case_sensitive must be a boolean");
      const Value attribute =
          NamedArg(args.positional, args.keywords, 2, "attribute", Value::Null());
      if (!attribute.is_string() && !attribute.is_int() && !attribute.is_null()) {
        Fail("attribute must be a string, integer, or null");
      }
      auto key = [&](const Value& item) {
        if (attribute.is_null()) return item;
        return GetAttributeValue(
            item, attribute.is_int() ? JsNumberToString(attribute.number) : attribute.str);
      };
      Array sorted = items;
      std::stable_sort(sorted.begin(), sorted.end(), [&](const Value& a, const Value& b) {
        const int r = CompareValues(key(a), key(b), case_sensitive.boolean);
        return (reverse.boolean ? -r : r) < 0;
      });
      return Value::MakeArray(std::move(sorted));
    }
    if (name == "selectattr" || name == "rejectattr") {
      const bool select = name == "selectattr";
      for (const Value& item : items) {
        if (!item.is_attribute_container())
          Fail(absl::StrCat("`", name, "` can only be applied to array of objects"));
      }
      for (const auto& arg : filter.args) {
        if (arg->kind != NodeKind::kStringLiteral)
          Fail(absl::StrCat("arguments of `", name, "` must be strings"));
      }
      if (filter.args.empty()) Fail(absl::StrCat("`", name, "` requires an attribute name"));
      const std::string& attr = filter.args[0]->name;
      const std::string test = filter.args.size() > 1 ? filter.args[1]->name : "";
      const Value test_arg =
          filter.args.size() > 2 ? Value::String(filter.args[2]->name) : Value::Undefined();
      if (!test.empty() && !IsKnownTest(test)) Fail(absl::StrCat("Unknown test: ", test));
      Array out;
      for (const Value& item : items) {
        const Value* a = item.object->Find(attr);
        bool result = false;
        if (a) {
          result = test.empty() ? a->Truthy()
                                : RunTest(test, *a, filter.args.size() > 2 ? &test_arg : nullptr);
        }
        if (select ? result : !result) out.push_back(item);
      }
      return Value::MakeArray(std::move(out));
    }
    if (name == "select" || name == "reject") {
      // Not in the reference (which fails on them); Python Jinja semantics: select(test, arg).
      const Arguments args = EvalArguments(filter.args, env);
      const std::string test = args.positional.empty() ? "" : args.positional[0].str;
      const Value* test_arg = args.positional.size() > 1 ? &args.positional[1] : nullptr;
      Array out;
      for (const Value& item : items) {
        const bool result = test.empty() ? item.Truthy() : RunTest(test, item, test_arg);
        if (result == (name == "select")) out.push_back(item);
      }
      return Value::MakeArray(std::move(out));
    }
    if (name == "map") {
      const Arguments args = EvalArguments(filter.args, env);
      const Value* attr = args.keywords.Find("attribute");
      if (!attr) Fail("`map` expressions without `attribute` set are not currently supported.");
      if (!attr->is_string()) Fail("attribute must be a string");
      const Value* fallback = args.keywords.Find("default");
      Array out;
      for (const Value& item : items) {
        if (!item.is_attribute_container()) Fail("items in map must be an object");
        Value v = GetAttributeValue(item, attr->str);
        out.push_back(v.is_undefined() && fallback ? *fallback : v);
      }
      return Value::MakeArray(std::move(out));
    }
    Fail(absl::StrCat("Unknown ArrayValue filter: ", name));
  }
  if (operand.is_string()) {
    if (name == "indent") {
      const Arguments args = EvalArguments(filter.args, env);
      const Value width = NamedArg(args.positional, args.keywords, 0, "width", Value::Int(4));
      if (!width.is_int()) Fail("width must be a number");
      if (width.number > kMaxIndentWidth) {
        Fail(
            absl::StrCat("indent width ", width.number, " exceeds the limit of ", kMaxIndentWidth));
      }
      const bool first =
          NamedArg(args.positional, args.keywords, 1, "first", Value::Bool(false)).Truthy();
      const bool blank =
          NamedArg(args.positional, args.keywords, 2, "blank", Value::Bool(false)).Truthy();
      const std::string pad(static_cast<size_t>(std::max(0.0, width.number)), ' ');
      const std::string& s = operand.str;
      std::string out;
      size_t start = 0;
      for (size_t line = 0;; ++line) {
        const size_t nl = s.find('\n', start);
        const std::string part =
            s.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
        if (line > 0) out += "\n";
        const bool skip = (!first && line == 0) || (!blank && part.empty());
        out += skip ? part : pad + part;
        if (nl == std::string::npos) break;
        start = nl + 1;
      }
      return Value::String(out);
    }
    if (name == "replace") {
      Arguments args = EvalArguments(filter.args, env);
      args.positional.push_back(Value::MakeObject(std::move(args.keywords), Kind::kKwargs));
      return (*BuiltinMember(operand, "replace").fn)(args.positional, env);
    }
    Fail(absl::StrCat("Unknown StringValue filter: ", name));
  }
  if (operand.is_object()) {
    const Value builtin = BuiltinMember(operand, name);
    if (builtin.kind == Kind::kFunction) {
      Arguments args = EvalArguments(filter.args, env);
      if (args.keywords.size() > 0) {
        args.positional.push_back(Value::MakeObject(std::move(args.keywords), Kind::kKwargs));
      }
      return (*builtin.fn)(args.positional, env);
    }
    Fail(absl::StrCat("Unknown ObjectValue filter: ", name));
  }
  Fail(absl::StrCat("Cannot apply filter \"", name, "\" to type: ", operand.TypeName()));
}

}  // namespace muse::jinja
