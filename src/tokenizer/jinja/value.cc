#include "src/tokenizer/jinja/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "src/tokenizer/jinja/unicode.h"

namespace muse::jinja {

void Fail(std::string message) { throw RenderError{std::move(message), false}; }

void CheckStringSize(size_t bytes, const char* what) {
  if (bytes > kMaxStringBytes) {
    Fail(absl::StrCat(what, ": string of ", bytes, " bytes exceeds the limit of ", kMaxStringBytes,
                      " bytes"));
  }
}

namespace {
int NestedDepth(int child_depth) {
  if (child_depth >= kMaxValueDepth) {
    Fail(absl::StrCat("value nesting exceeds the limit of ", kMaxValueDepth, " levels"));
  }
  return child_depth + 1;
}
}  // namespace

const Value* ObjectMap::Find(std::string_view key) const {
  for (const auto& [k, v] : entries_) {
    if (k == key) return &v;
  }
  return nullptr;
}

void ObjectMap::Set(std::string key, Value value) {
  for (auto& [k, v] : entries_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  entries_.emplace_back(std::move(key), std::move(value));
}

bool ObjectMap::Erase(std::string_view key) {
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->first == key) {
      entries_.erase(it);
      return true;
    }
  }
  return false;
}

Value Value::Null() {
  Value v;
  v.kind = Kind::kNull;
  return v;
}
Value Value::Bool(bool b) {
  Value v;
  v.kind = Kind::kBool;
  v.boolean = b;
  return v;
}
Value Value::Int(double n) {
  Value v;
  v.kind = Kind::kInt;
  v.number = n;
  return v;
}
Value Value::Float(double n) {
  Value v;
  v.kind = Kind::kFloat;
  v.number = n;
  return v;
}
Value Value::String(std::string s) {
  Value v;
  v.kind = Kind::kString;
  v.str = std::move(s);
  return v;
}
Value Value::MakeArray(Array items) {
  Value v;
  v.kind = Kind::kArray;
  if (items.size() > kMaxArrayItems) {
    Fail(absl::StrCat("array of ", items.size(), " items exceeds the limit of ", kMaxArrayItems));
  }
  int child = 0;
  for (const Value& item : items) child = std::max(child, item.depth);
  v.depth = NestedDepth(child);
  v.array = std::make_shared<Array>(std::move(items));
  return v;
}
Value Value::MakeTuple(Array items) {
  Value v = MakeArray(std::move(items));
  v.kind = Kind::kTuple;
  return v;
}
Value Value::MakeObject(ObjectMap map, Kind kind) {
  Value v;
  v.kind = kind;
  int child = 0;
  for (const auto& entry : map.entries()) child = std::max(child, entry.second.depth);
  v.depth = NestedDepth(child);
  v.object = std::make_shared<ObjectMap>(std::move(map));
  return v;
}
Value Value::Function(NativeFn fn) {
  Value v;
  v.kind = Kind::kFunction;
  v.fn = std::make_shared<NativeFn>(std::move(fn));
  return v;
}

bool Value::Truthy() const {
  switch (kind) {
    case Kind::kUndefined:
    case Kind::kNull:
      return false;
    case Kind::kBool:
      return boolean;
    case Kind::kInt:
    case Kind::kFloat:
      return number != 0 && !std::isnan(number);
    case Kind::kString:
      return !str.empty();
    case Kind::kArray:
    case Kind::kTuple:
      return !array->empty();
    case Kind::kObject:
    case Kind::kKwargs:
      return object->size() > 0;
    case Kind::kNamespace:
    case Kind::kFunction:
      return true;
  }
  return false;
}

const char* Value::TypeName() const {
  switch (kind) {
    case Kind::kUndefined:
      return "UndefinedValue";
    case Kind::kNull:
      return "NullValue";
    case Kind::kBool:
      return "BooleanValue";
    case Kind::kInt:
      return "IntegerValue";
    case Kind::kFloat:
      return "FloatValue";
    case Kind::kString:
      return "StringValue";
    case Kind::kArray:
      return "ArrayValue";
    case Kind::kTuple:
      return "TupleValue";
    case Kind::kObject:
      return "ObjectValue";
    case Kind::kKwargs:
      return "KeywordArgumentsValue";
    case Kind::kNamespace:
      return "NamespaceValue";
    case Kind::kFunction:
      return "FunctionValue";
  }
  return "RuntimeValue";
}

std::string JsNumberToString(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  if (v == 0) return "0";
  std::string sign = v < 0 ? "-" : "";
  // Shortest round-trip digits, as ECMAScript's Number::toString requires.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), std::fabs(v), std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  const size_t e = sci.find('e');
  std::string digits;
  for (size_t i = 0; i < e; ++i) {
    if (sci[i] != '.') digits += sci[i];
  }
  const int k = static_cast<int>(digits.size());
  const int n = std::atoi(sci.c_str() + e + 1) + 1;  // value = 0.digits * 10^n
  std::string out;
  if (k <= n && n <= 21) {
    out = digits + std::string(n - k, '0');
  } else if (0 < n && n <= 21) {
    out = digits.substr(0, n) + "." + digits.substr(n);
  } else if (-6 < n && n <= 0) {
    out = "0." + std::string(-n, '0') + digits;
  } else {
    const int exp = n - 1;
    out = digits.substr(0, 1);
    if (k > 1) out += "." + digits.substr(1);
    out += exp >= 0 ? "e+" : "e-";
    out += std::to_string(std::abs(exp));
  }
  return sign + out;
}

std::string JsonQuote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char esc[8];
          std::snprintf(esc, sizeof(esc), "\\u%04x", c);
          out += esc;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

namespace {

// makeAsciiSafe(): every UTF-16 code unit in [\x7f-\uffff] becomes \uXXXX.
std::string AsciiSafe(std::string_view s) {
  std::string out;
  std::vector<uint16_t> units;
  for (uint32_t cp : DecodeUtf8(s)) {
    if (cp < 0x7F) {
      out += static_cast<char>(cp);
      continue;
    }
    units.clear();
    AppendUtf16Units(units, cp);
    for (uint16_t u : units) {
      char esc[8];
      std::snprintf(esc, sizeof(esc), "\\u%04x", u);
      out += esc;
    }
  }
  return out;
}

std::string NumberToJson(double v) {
  if (std::isnan(v) || std::isinf(v)) return "null";
  return JsNumberToString(v);
}

// Approximates String.prototype.localeCompare for sort_keys: case-insensitive first, lower before
// upper.
bool LocaleLess(const std::string& a, const std::string& b) {
  const std::string la = JsToLower(a), lb = JsToLower(b);
  if (la != lb) return la < lb;
  return a > b;
}

}  // namespace

std::string ToJson(const Value& v, const ToJsonOptions& options, int depth,
                   bool undefined_to_null) {
  std::string item_sep, key_sep;
  if (options.has_separators) {
    item_sep = options.item_separator;
    key_sep = options.key_separator;
  } else if (options.indent > 0) {
    item_sep = ",";
    key_sep = ": ";
  } else {
    item_sep = ", ";
    key_sep = ": ";
  }
  switch (v.kind) {
    case Kind::kNull:
      return "null";
    case Kind::kUndefined:
      return undefined_to_null ? "null" : "undefined";
    case Kind::kInt:
    case Kind::kFloat:
      return NumberToJson(v.number);
    case Kind::kBool:
      return v.boolean ? "true" : "false";
    case Kind::kString: {
      std::string s = JsonQuote(v.str);
      return options.ensure_ascii ? AsciiSafe(s) : s;
    }
    case Kind::kArray:
    case Kind::kTuple:
    case Kind::kObject:
    case Kind::kKwargs:
    case Kind::kNamespace: {
      const std::string indent_unit(options.indent > 0 ? options.indent : 0, ' ');
      std::string base_padding = "\n";
      for (int i = 0; i < depth; ++i) base_padding += indent_unit;
      const std::string child_padding = base_padding + indent_unit;
      const bool indent = options.indent > 0;
      std::vector<std::string> core;
      if (v.is_array()) {
        for (const Value& item : *v.array)
          core.push_back(ToJson(item, options, depth + 1, undefined_to_null));
        std::string out = "[";
        if (indent && !core.empty()) {
          out += child_padding;
          for (size_t i = 0; i < core.size(); ++i) {
            if (i > 0) out += item_sep + child_padding;
            out += core[i];
          }
          out += base_padding;
        } else {
          for (size_t i = 0; i < core.size(); ++i) {
            if (i > 0) out += item_sep;
            out += core[i];
          }
        }
        return out + "]";
      }
      std::vector<const std::pair<std::string, Value>*> entries;
      for (const auto& e : v.object->entries()) entries.push_back(&e);
      if (options.sort_keys) {
        std::stable_sort(entries.begin(), entries.end(), [](const auto* a, const auto* b) {
          return LocaleLess(a->first, b->first);
        });
      }
      for (const auto* e : entries) {
        std::string key = JsonQuote(e->first);
        if (options.ensure_ascii) key = AsciiSafe(key);
        std::string item = key + key_sep + ToJson(e->second, options, depth + 1, undefined_to_null);
        core.push_back(indent ? child_padding + item : item);
      }
      std::string out = "{";
      for (size_t i = 0; i < core.size(); ++i) {
        if (i > 0) out += item_sep;
        out += core[i];
      }
      if (indent && !core.empty()) out += base_padding;
      return out + "}";
    }
    case Kind::kFunction:
      break;
  }
  Fail(std::string("Cannot convert to JSON: ") + v.TypeName());
}

std::string Value::ToString() const {
  switch (kind) {
    case Kind::kUndefined:
      return "undefined";
    case Kind::kNull:
      return "null";
    case Kind::kBool:
      return boolean ? "true" : "false";
    case Kind::kInt:
      return JsNumberToString(number);
    case Kind::kFloat:
      if (number == 0 && std::signbit(number)) return "-0.0";
      if (std::isfinite(number) && std::trunc(number) == number && std::fabs(number) < 1e21) {
        return JsNumberToString(number) + ".0";
      }
      return JsNumberToString(number);
    case Kind::kString:
      return str;
    case Kind::kFunction:
      return "[function]";
    default:
      return ToJson(*this, ToJsonOptions{}, 0, false);
  }
}

namespace {

// ToNumber() of a JavaScript string.
double StringToNumber(const std::string& s) {
  const std::string t = JsTrim(s, true, true);
  if (t.empty()) return 0;
  if (t == "Infinity" || t == "+Infinity") return INFINITY;
  if (t == "-Infinity") return -INFINITY;
  if (t.size() > 2 && t[0] == '0' &&
      (t[1] == 'x' || t[1] == 'X' || t[1] == 'o' || t[1] == 'O' || t[1] == 'b' || t[1] == 'B')) {
    const int base = (t[1] == 'x' || t[1] == 'X') ? 16 : (t[1] == 'o' || t[1] == 'O') ? 8 : 2;
    char* end = nullptr;
    const double r = static_cast<double>(std::strtoull(t.c_str() + 2, &end, base));
    return *end == '\0' ? r : NAN;
  }
  for (char c : t) {
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'))
      return NAN;
  }
  char* end = nullptr;
  const double r = std::strtod(t.c_str(), &end);
  return *end == '\0' ? r : NAN;
}

// ToPrimitive() of an array of runtime values: Array.prototype.join(",") over their toString().
std::string ArrayPrimitive(const Value& v) {
  std::string out;
  for (size_t i = 0; i < v.array->size(); ++i) {
    if (i > 0) out += ",";
    out += (*v.array)[i].ToString();
  }
  return out;
}

}  // namespace

bool StrictEquals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) return a.number == b.number;
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Kind::kUndefined:
    case Kind::kNull:
      return true;
    case Kind::kBool:
      return a.boolean == b.boolean;
    case Kind::kString:
      return a.str == b.str;
    case Kind::kArray:
    case Kind::kTuple:
      return a.array == b.array;
    case Kind::kFunction:
      return a.fn == b.fn;
    default:
      return a.object == b.object;
  }
}

bool LooseEquals(const Value& a, const Value& b) {
  const bool a_nullish = a.is_null() || a.is_undefined();
  const bool b_nullish = b.is_null() || b.is_undefined();
  if (a_nullish || b_nullish) return a_nullish && b_nullish;
  const bool a_prim = a.is_number() || a.kind == Kind::kBool || a.is_string();
  const bool b_prim = b.is_number() || b.kind == Kind::kBool || b.is_string();
  if (!a_prim && !b_prim) return StrictEquals(a, b);
  if (a_prim && b_prim) {
    if (a.is_string() && b.is_string()) return a.str == b.str;
    auto to_num = [](const Value& v) {
      if (v.kind == Kind::kBool) return v.boolean ? 1.0 : 0.0;
      if (v.is_string()) return StringToNumber(v.str);
      return v.number;
    };
    return to_num(a) == to_num(b);
  }
  // One side is a container: compare its primitive form with the other side.
  const Value& obj = a_prim ? b : a;
  const Value& prim = a_prim ? a : b;
  std::string obj_str;
  if (obj.is_array()) {
    obj_str = ArrayPrimitive(obj);
  } else if (obj.kind == Kind::kFunction) {
    return false;
  } else {
    obj_str = "[object Map]";
  }
  return LooseEquals(Value::String(obj_str), prim);
}

}  // namespace muse::jinja
