#include "src/tokenizer/jinja/builtins.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "src/tokenizer/jinja/unicode.h"

namespace muse::jinja {
namespace {

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool EndsWith(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

Value AffixTest(const std::string& self, const std::vector<Value>& args, bool prefix) {
  const char* name = prefix ? "startswith" : "endswith";
  if (args.empty()) Fail(absl::StrCat(name, "() requires at least one argument"));
  auto test = [&](const std::string& p) {
    return prefix ? StartsWith(self, p) : EndsWith(self, p);
  };
  const Value& pattern = args[0];
  if (pattern.is_string()) return Value::Bool(test(pattern.str));
  if (pattern.is_array()) {
    for (const Value& item : *pattern.array) {
      if (!item.is_string()) Fail(absl::StrCat(name, "() tuple elements must be strings"));
      if (test(item.str)) return Value::Bool(true);
    }
    return Value::Bool(false);
  }
  Fail(absl::StrCat(name, "() argument must be a string or tuple of strings"));
}

// Python str.split(sep=None, maxsplit=-1), as the reference implements it.
Value Split(const std::string& self, const std::vector<Value>& args) {
  const Value sep = !args.empty() ? args[0] : Value::Null();
  if (!sep.is_string() && !sep.is_null()) Fail("sep argument must be a string or null");
  const Value maxsplit = args.size() > 1 ? args[1] : Value::Int(-1);
  if (!maxsplit.is_int()) Fail("maxsplit argument must be a number");
  const double max = maxsplit.number;
  Array result;
  if (sep.is_null()) {
    const std::string text = JsTrim(self, true, false);
    size_t i = 0;
    while (i < text.size()) {
      size_t start = i;
      while (start < text.size() && WhitespaceLenAt(text, start))
        start += WhitespaceLenAt(text, start);
      if (start >= text.size()) break;
      size_t end = start;
      while (end < text.size() && !WhitespaceLenAt(text, end)) {
        size_t len = 1;
        DecodeAt(text, end, &len);
        end += len;
      }
      if (max != -1 && static_cast<double>(result.size()) >= max) {
        result.push_back(Value::String(text.substr(start)));
        break;
      }
      result.push_back(Value::String(text.substr(start, end - start)));
      i = end;
    }
  } else {
    if (sep.str.empty()) Fail("empty separator");
    std::vector<std::string> parts;
    size_t start = 0;
    while (true) {
      const size_t at = self.find(sep.str, start);
      if (at == std::string::npos) break;
      parts.push_back(self.substr(start, at - start));
      start = at + sep.str.size();
    }
    parts.push_back(self.substr(start));
    if (max != -1 && static_cast<double>(parts.size()) > max) {
      const size_t keep = max < 0 ? 0 : static_cast<size_t>(max);
      std::string rest;
      for (size_t i = keep; i < parts.size(); ++i)
        absl::StrAppend(&rest, i > keep ? sep.str : "", parts[i]);
      parts.resize(keep);
      parts.push_back(rest);
    }
    for (auto& p : parts) result.push_back(Value::String(std::move(p)));
  }
  return Value::MakeArray(std::move(result));
}

// utils.replace(): Python str.replace with an optional count.
Value Replace(const std::string& self, const std::vector<Value>& args) {
  if (args.size() < 2) Fail("replace() requires at least two arguments");
  if (!args[0].is_string() || !args[1].is_string()) Fail("replace() arguments must be strings");
  Value count = Value::Null();
  if (args.size() > 2) {
    if (args[2].kind == Kind::kKwargs) {
      const Value* c = args[2].object->Find("count");
      count = c ? *c : Value::Null();
    } else {
      count = args[2];
    }
  }
  if (!count.is_int() && !count.is_null())
    Fail("replace() count argument must be a number or null");
  if (count.is_int() && count.number == 0) return Value::String(self);
  double remaining = (count.is_null() || count.number < 0) ? std::numeric_limits<double>::infinity()
                                                           : count.number;
  const std::string& from = args[0].str;
  const std::string& to = args[1].str;
  if (to.size() > from.size()) {  // the result can grow: bound it before building it
    size_t matches = 0;
    if (from.empty()) {
      matches = self.size() + 1;  // at most one per byte boundary
    } else {
      for (size_t at = self.find(from); at != std::string::npos && matches < remaining;
           at = self.find(from, at + from.size())) {
        ++matches;
      }
    }
    if (matches > remaining) matches = static_cast<size_t>(remaining);
    CheckStringSize(self.size() + matches * (to.size() - from.size()), "replace()");
  }
  std::string out;
  if (from.empty()) {
    // Matches at every code point boundary, including both ends.
    size_t i = 0;
    while (true) {
      if (remaining > 0) {
        out += to;
        --remaining;
      }
      if (i >= self.size()) break;
      size_t len = 1;
      DecodeAt(self, i, &len);
      out.append(self, i, len);
      i += len;
    }
    return Value::String(out);
  }
  size_t start = 0;
  while (remaining > 0) {
    const size_t at = self.find(from, start);
    if (at == std::string::npos) break;
    out.append(self, start, at - start);
    out += to;
    start = at + from.size();
    --remaining;
  }
  out.append(self, start);
  return Value::String(out);
}

Value StringMember(const Value& s, const std::string& name) {
  const std::string self = s.str;
  auto fn = [](auto f) {
    return Value::Function([f](std::vector<Value>& args, const EnvPtr&) { return f(args); });
  };
  if (name == "length") return Value::Int(static_cast<double>(Utf16Length(self)));
  if (name == "upper") return fn([self](auto&) { return Value::String(JsToUpper(self)); });
  if (name == "lower") return fn([self](auto&) { return Value::String(JsToLower(self)); });
  if (name == "strip") return fn([self](auto&) { return Value::String(JsTrim(self, true, true)); });
  if (name == "lstrip")
    return fn([self](auto&) { return Value::String(JsTrim(self, true, false)); });
  if (name == "rstrip")
    return fn([self](auto&) { return Value::String(JsTrim(self, false, true)); });
  if (name == "title") return fn([self](auto&) { return Value::String(JsTitleCase(self)); });
  if (name == "capitalize") return fn([self](auto&) { return Value::String(JsCapitalize(self)); });
  if (name == "startswith") return fn([self](auto& args) { return AffixTest(self, args, true); });
  if (name == "endswith") return fn([self](auto& args) { return AffixTest(self, args, false); });
  if (name == "split") return fn([self](auto& args) { return Split(self, args); });
  if (name == "replace") return fn([self](auto& args) { return Replace(self, args); });
  return Value::Undefined();
}

Value DictSort(const Value& object, const std::vector<Value>& args) {
  std::vector<Value> positional;
  const Value* kwargs = nullptr;
  for (const Value& a : args) {
    if (a.kind == Kind::kKwargs) {
      kwargs = &a;
    } else {
      positional.push_back(a);
    }
  }
  auto arg = [&](size_t i, const char* key, Value fallback) {
    if (i < positional.size()) return positional[i];
    if (kwargs) {
      if (const Value* v = kwargs->object->Find(key)) return *v;
    }
    return fallback;
  };
  const Value case_sensitive = arg(0, "case_sensitive", Value::Bool(false));
  if (case_sensitive.kind != Kind::kBool) Fail("case_sensitive must be a boolean");
  const Value by = arg(1, "by", Value::String("key"));
  if (!by.is_string()) Fail("by must be a string");
  if (by.str != "key" && by.str != "value") Fail("by must be either 'key' or 'value'");
  const Value reverse = arg(2, "reverse", Value::Bool(false));
  if (reverse.kind != Kind::kBool) Fail("reverse must be a boolean");
  Array items = ObjectItems(object).array ? *ObjectItems(object).array : Array{};
  const size_t index = by.str == "key" ? 0 : 1;
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    int r = CompareValues((*a.array)[index], (*b.array)[index], case_sensitive.boolean);
    return (reverse.boolean ? -r : r) < 0;
  });
  return Value::MakeArray(std::move(items));
}

Value ObjectMember(const Value& obj, const std::string& name) {
  auto fn = [](auto f) {
    return Value::Function([f](std::vector<Value>& args, const EnvPtr&) { return f(args); });
  };
  if (name == "get") {
    return fn([obj](auto& args) {
      const Value key = args.size() > 0 ? args[0] : Value::Undefined();
      if (!key.is_string()) Fail(absl::StrCat("Object key must be a string: got ", key.TypeName()));
      if (const Value* v = obj.object->Find(key.str)) return *v;
      return args.size() > 1 ? args[1] : Value::Null();
    });
  }
  if (name == "items") return fn([obj](auto&) { return ObjectItems(obj); });
  if (name == "keys") return fn([obj](auto&) { return ObjectKeys(obj); });
  if (name == "values") {
    return fn([obj](auto&) {
      Array values;
      for (const auto& [k, v] : obj.object->entries()) values.push_back(v);
      return Value::MakeArray(std::move(values));
    });
  }
  if (name == "dictsort") return fn([obj](auto& args) { return DictSort(obj, args); });
  return Value::Undefined();
}

}  // namespace

Value BuiltinMember(const Value& object, const std::string& name) {
  if (object.is_string()) return StringMember(object, name);
  if (object.is_object()) return ObjectMember(object, name);
  if (object.is_array() && name == "length")
    return Value::Int(static_cast<double>(object.array->size()));
  return Value::Undefined();
}

bool IsKnownMethod(std::string_view name) {
  static const char* const kMethods[] = {
      "upper",    "lower", "strip",   "lstrip", "rstrip", "title", "capitalize", "startswith",
      "endswith", "split", "replace", "get",    "items",  "keys",  "values",     "dictsort"};
  for (const char* m : kMethods) {
    if (name == m) return true;
  }
  return false;
}

Value ObjectItems(const Value& object) {
  Array items;
  for (const auto& [k, v] : object.object->entries())
    items.push_back(Value::MakeArray({Value::String(k), v}));
  return Value::MakeArray(std::move(items));
}

Value ObjectKeys(const Value& object) {
  Array keys;
  for (const auto& [k, v] : object.object->entries()) keys.push_back(Value::String(k));
  return Value::MakeArray(std::move(keys));
}

bool IsKnownTest(std::string_view name) {
  static const char* const kTests[] = {"boolean",  "callable",  "odd",      "even",   "false",
                                       "true",     "none",      "string",   "number", "integer",
                                       "iterable", "mapping",   "sequence", "lower",  "upper",
                                       "defined",  "undefined", "equalto",  "eq"};
  for (const char* t : kTests) {
    if (name == t) return true;
  }
  return false;
}

bool RunTest(std::string_view name, const Value& operand, const Value* arg) {
  if (name == "boolean") return operand.kind == Kind::kBool;
  if (name == "callable") return operand.kind == Kind::kFunction;
  if (name == "odd" || name == "even") {
    if (!operand.is_int())
      Fail(absl::StrCat("cannot ", std::string(name), " on ", operand.TypeName()));
    const bool odd = std::fmod(operand.number, 2) != 0;
    return name == "odd" ? odd : !odd;
  }
  if (name == "false") return operand.kind == Kind::kBool && !operand.boolean;
  if (name == "true") return operand.kind == Kind::kBool && operand.boolean;
  if (name == "none") return operand.is_null();
  if (name == "string") return operand.is_string();
  if (name == "number") return operand.is_number();
  if (name == "integer") return operand.is_int();
  if (name == "iterable")
    return operand.kind == Kind::kArray || operand.is_string();  // not tuples, not dicts
  if (name == "mapping") return operand.is_object();
  if (name == "sequence") return operand.is_array() || operand.is_object() || operand.is_string();
  if (name == "lower" || name == "upper") {
    if (!operand.is_string())
      Fail(absl::StrCat("cannot test '", std::string(name), "' on ", operand.TypeName()));
    return operand.str == (name == "lower" ? JsToLower(operand.str) : JsToUpper(operand.str));
  }
  if (name == "defined") return !operand.is_undefined();
  if (name == "undefined") return operand.is_undefined();
  if (name == "equalto" || name == "eq") {
    if (arg == nullptr) Fail("Cannot read properties of undefined (reading 'value')");
    return StrictEquals(operand, *arg);
  }
  Fail(absl::StrCat("Unknown test: ", std::string(name)));
}

std::string RawToString(const Value& v) {
  switch (v.kind) {
    case Kind::kInt:
    case Kind::kFloat:
      return JsNumberToString(v.number);
    case Kind::kArray:
    case Kind::kTuple: {
      std::string out;
      for (size_t i = 0; i < v.array->size(); ++i)
        absl::StrAppend(&out, i ? "," : "", (*v.array)[i].ToString());
      return out;
    }
    case Kind::kObject:
    case Kind::kKwargs:
    case Kind::kNamespace:
      return "[object Map]";
    default:
      return v.ToString();
  }
}

int CompareValues(const Value& a, const Value& b, bool case_sensitive) {
  if (a.is_null() && b.is_null()) return 0;
  if (a.is_null() || b.is_null() || a.is_undefined() != b.is_undefined()) {
    Fail(absl::StrCat("Cannot compare ", a.TypeName(), " with ", b.TypeName()));
  }
  if (a.is_undefined()) return 0;
  auto numeric = [](const Value& v) { return v.is_number() || v.kind == Kind::kBool; };
  if (numeric(a) && numeric(b)) {
    const double x = a.kind == Kind::kBool ? a.boolean : a.number;
    const double y = b.kind == Kind::kBool ? b.boolean : b.number;
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.kind != b.kind)
    Fail(absl::StrCat("Cannot compare different types: ", a.TypeName(), " and ", b.TypeName()));
  if (!a.is_string()) Fail(absl::StrCat("Cannot compare type: ", a.TypeName()));
  const std::string x = case_sensitive ? a.str : JsToLower(a.str);
  const std::string y = case_sensitive ? b.str : JsToLower(b.str);
  return x < y ? -1 : x > y ? 1 : 0;
}

Value GetAttributeValue(const Value& item, const std::string& path) {
  Value value = item;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (value.is_attribute_container()) {
      const Value* v = value.object->Find(part);
      value = v ? *v : Value::Undefined();
    } else if (value.is_array()) {
      char* end = nullptr;
      const long index = std::strtol(part.c_str(), &end, 10);
      if (end == part.c_str() || index < 0 || static_cast<size_t>(index) >= value.array->size()) {
        return Value::Undefined();
      }
      value = Value((*value.array)[index]);
    } else {
      return Value::Undefined();
    }
    if (dot == std::string::npos) return value;
    start = dot + 1;
  }
}

std::vector<size_t> SliceIndices(size_t length, const Value& start_v, const Value& stop_v,
                                 const Value& step_v) {
  const long n = static_cast<long>(length);
  const long step = step_v.is_undefined() ? 1 : static_cast<long>(step_v.number);
  const int direction = step > 0 ? 1 : step < 0 ? -1 : 0;
  long start, stop;
  if (direction >= 0) {
    start = start_v.is_undefined() ? 0 : static_cast<long>(start_v.number);
    stop = stop_v.is_undefined() ? n : static_cast<long>(stop_v.number);
    start = start < 0 ? std::max(n + start, 0L) : std::min(start, n);
    stop = stop < 0 ? std::max(n + stop, 0L) : std::min(stop, n);
  } else {
    start = start_v.is_undefined() ? n - 1 : static_cast<long>(start_v.number);
    stop = stop_v.is_undefined() ? -1 : static_cast<long>(stop_v.number);
    start = start < 0 ? std::max(n + start, -1L) : std::min(start, n - 1);
    stop = stop < -1 ? std::max(n + stop, -1L) : std::min(stop, n - 1);
  }
  std::vector<size_t> out;
  if (direction == 0) return out;
  for (long i = start; direction * i < direction * stop; i += step)
    out.push_back(static_cast<size_t>(i));
  return out;
}

}  // namespace muse::jinja
