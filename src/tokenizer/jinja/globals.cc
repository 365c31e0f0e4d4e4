// Global functions of the reference's setupGlobals(): namespace, raise_exception, range,
// strftime_now.
#include <cmath>
#include <ctime>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "src/tokenizer/jinja/builtins.h"

namespace muse::jinja {
namespace {

Value Namespace(std::vector<Value>& args) {
  std::vector<Value> positional = args;
  Value kwargs;
  if (!positional.empty() && positional.back().kind == Kind::kKwargs) {
    kwargs = positional.back();
    positional.pop_back();
  }
  if (positional.size() > 1)
    Fail(absl::StrCat("namespace expected at most 1 argument, got ", positional.size()));
  ObjectMap entries;
  if (positional.size() == 1) {
    const Value& source = positional[0];
    if (source.is_object()) {
      for (const auto& [k, v] : source.object->entries()) entries.Set(k, v);
    } else if (source.is_array()) {
      for (const Value& pair : *source.array) {
        std::vector<Value> kv;
        if (pair.is_array()) {
          kv = *pair.array;
        } else if (pair.is_string()) {
          for (char c : pair.str) kv.push_back(Value::String(std::string(1, c)));
        }
        if (kv.size() != 2)
          Fail("namespace expected an object or an iterable of [key, value] pairs");
        if (!kv[0].is_string()) Fail("namespace keys must be strings");
        entries.Set(kv[0].str, kv[1]);
      }
    } else {
      Fail(absl::StrCat("'", source.TypeName(), "' object is not iterable"));
    }
  }
  if (kwargs.is_object()) {
    for (const auto& [k, v] : kwargs.object->entries()) entries.Set(k, v);
  }
  return Value::MakeObject(std::move(entries), Kind::kNamespace);
}

// User functions receive raw values: `raise_exception(msg)` throws new Error(msg).
Value RaiseException(std::vector<Value>& args) {
  std::string message;
  if (!args.empty() && !args[0].is_undefined()) message = RawToString(args[0]);
  throw RenderError{std::move(message), true};
}

Value Range(std::vector<Value>& args) {
  auto num = [&](size_t i, bool* present) -> double {
    *present = i < args.size() && !args[i].is_undefined();
    if (!*present) return 0;
    if (!args[i].is_number()) Fail("range() arguments must be numbers");
    return args[i].number;
  };
  bool has_start, has_stop, has_step;
  double start = num(0, &has_start), stop = num(1, &has_stop), step = num(2, &has_step);
  if (!has_start) Fail("range() expects at least one argument");
  if (!has_stop) {
    stop = start;
    start = 0;
  }
  if (!has_step) step = 1;
  if (step == 0) Fail("range() step must not be zero");
  const double count = std::ceil((stop - start) / step);
  if (count > static_cast<double>(kMaxArrayItems)) {
    Fail(absl::StrCat("range() of ", count, " items exceeds the limit of ", kMaxArrayItems));
  }
  Array out;
  auto push = [&](double i) {
    out.push_back(std::trunc(i) == i ? Value::Int(i) : Value::Float(i));
  };
  if (step > 0) {
    for (double i = start; i < stop; i += step) push(i);
  } else {
    for (double i = start; i > stop; i += step) push(i);
  }
  return Value::MakeArray(std::move(out));
}

// Python-style strftime over local time, limited to the tokens the reference supports.
Value StrftimeNow(std::vector<Value>& args) {
  if (args.empty() || !args[0].is_string()) Fail("strftime_now() expects a format string");
  static const char* const kLong[] = {"January",   "February", "March",    "April",
                                      "May",       "June",     "July",     "August",
                                      "September", "October",  "November", "December"};
  static const char* const kShort[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  auto pad2 = [](int n) { return n < 10 ? absl::StrCat("0", n) : absl::StrCat(n); };
  const std::string& fmt = args[0].str;
  std::string out;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%' || i + 1 >= fmt.size()) {
      out += fmt[i];
      continue;
    }
    const char c = fmt[i + 1];
    switch (c) {
      case 'Y':
        out += absl::StrCat(tm.tm_year + 1900);
        break;
      case 'm':
        out += pad2(tm.tm_mon + 1);
        break;
      case 'd':
        out += pad2(tm.tm_mday);
        break;
      case 'b':
        out += kShort[tm.tm_mon];
        break;
      case 'B':
        out += kLong[tm.tm_mon];
        break;
      case 'H':
        out += pad2(tm.tm_hour);
        break;
      case 'M':
        out += pad2(tm.tm_min);
        break;
      case '%':
        out += '%';
        break;
      default:
        out += fmt[i];
        continue;  // unknown tokens stay as they are
    }
    ++i;
  }
  return Value::String(out);
}

Value Native(Value (*fn)(std::vector<Value>&)) {
  return Value::Function([fn](std::vector<Value>& args, const EnvPtr&) { return fn(args); });
}

}  // namespace

void SetupGlobals(Environment& env) {
  env.Set("namespace", Native(&Namespace));
  env.Set("false", Value::Bool(false));
  env.Set("true", Value::Bool(true));
  env.Set("none", Value::Null());
  env.Set("raise_exception", Native(&RaiseException));
  env.Set("range", Native(&Range));
  env.Set("strftime_now", Native(&StrftimeNow));
  env.Set("True", Value::Bool(true));
  env.Set("False", Value::Bool(false));
  env.Set("None", Value::Null());
}

bool IsGlobalFunction(std::string_view name) {
  return name == "namespace" || name == "raise_exception" || name == "range" ||
         name == "strftime_now";
}

}  // namespace muse::jinja
