// Runtime values of the template language, mirroring the value classes of @huggingface/jinja
// (IntegerValue, FloatValue, StringValue, ArrayValue, TupleValue, ObjectValue, ...).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace muse::jinja {

class Environment;
struct Value;

// Raised while rendering; caught at the module boundary and turned into an absl::Status.
struct RenderError {
  std::string message;
  bool user_raised = false;  // from raise_exception(): the message is the template's own
};
[[noreturn]] void Fail(std::string message);

// Resource limits of one parse and render. Templates and the messages rendered into them are
// untrusted input: no template may exhaust the stack, memory or CPU time. Exceeding a limit fails
// with InvalidArgument naming it. Real chat templates stay far below every one of them.
inline constexpr int kMaxParseDepth = 128;                  // nested statements / expressions
inline constexpr int kMaxEvalDepth = 512;                   // nested evaluation, macro recursion
inline constexpr int kMaxValueDepth = 128;                  // nested arrays / objects
inline constexpr size_t kMaxStringBytes = size_t{8} << 20;  // any string, the output included
inline constexpr size_t kMaxArrayItems = size_t{1} << 20;   // range() and other arrays
inline constexpr int kMaxIndentWidth = 1024;                // indent / tojson(indent=)
// Evaluation steps (a loop iteration counts 10), plus one per 16 bytes of string and per array
// item produced: under a second of CPU (0.5-0.9 s measured for loops that hit it).
inline constexpr int64_t kMaxRenderFuel = 5'000'000;
// Fails when a string of `bytes` would exceed kMaxStringBytes (`what` names the operation).
void CheckStringSize(size_t bytes, const char* what);

using Array = std::vector<Value>;

// Insertion-ordered string map, like a JavaScript Map.
class ObjectMap {
 public:
  const Value* Find(std::string_view key) const;
  void Set(std::string key, Value value);
  bool Erase(std::string_view key);
  void Clear();         // defined below Value, as size()
  size_t size() const;  // defined below Value: vector<T>::size() needs a complete T
  const std::vector<std::pair<std::string, Value>>& entries() const { return entries_; }

 private:
  std::vector<std::pair<std::string, Value>> entries_;
};

using EnvPtr = std::shared_ptr<Environment>;
using NativeFn = std::function<Value(std::vector<Value>& args, const EnvPtr& env)>;

enum class Kind {
  kUndefined,
  kNull,
  kBool,
  kInt,
  kFloat,
  kString,
  kArray,
  kTuple,
  kObject,
  kKwargs,  // keyword arguments passed as the last positional argument
  kNamespace,
  kFunction,
};

struct Value {
  Kind kind = Kind::kUndefined;
  bool boolean = false;
  // Container nesting (0 for scalars) when the container was made; see kMaxValueDepth.
  int depth = 0;
  double number = 0;  // integers are JavaScript numbers too
  std::string str;
  std::shared_ptr<Array> array;
  std::shared_ptr<ObjectMap> object;
  std::shared_ptr<NativeFn> fn;

  static Value Undefined() { return Value(); }
  static Value Null();
  static Value Bool(bool b);
  static Value Int(double n);
  static Value Float(double n);
  static Value String(std::string s);
  static Value MakeArray(Array items);
  static Value MakeTuple(Array items);
  static Value MakeObject(ObjectMap map, Kind kind = Kind::kObject);
  static Value Function(NativeFn fn);

  bool is_undefined() const { return kind == Kind::kUndefined; }
  bool is_null() const { return kind == Kind::kNull; }
  bool is_string() const { return kind == Kind::kString; }
  bool is_int() const { return kind == Kind::kInt; }
  bool is_number() const { return kind == Kind::kInt || kind == Kind::kFloat; }
  // instanceof ArrayValue (tuples included).
  bool is_array() const { return kind == Kind::kArray || kind == Kind::kTuple; }
  // instanceof ObjectValue (keyword arguments included).
  bool is_object() const { return kind == Kind::kObject || kind == Kind::kKwargs; }
  bool is_attribute_container() const { return is_object() || kind == Kind::kNamespace; }

  // __bool__(): Python truthiness for containers, JavaScript's !!value otherwise.
  bool Truthy() const;
  // toString(), which is what {{ }} prints.
  std::string ToString() const;
  // The reference's class name, used in error messages.
  const char* TypeName() const;
};

inline size_t ObjectMap::size() const { return entries_.size(); }
inline void ObjectMap::Clear() { entries_.clear(); }

// JavaScript Number.prototype.toString().
std::string JsNumberToString(double v);
// JSON.stringify() of a string.
std::string JsonQuote(std::string_view s);

struct ToJsonOptions {
  int indent = 0;  // 0: single line
  bool ensure_ascii = false;
  bool sort_keys = false;
  bool has_separators = false;
  std::string item_separator;
  std::string key_separator;
};
// The reference's toJSON(): Python json.dumps spacing.
std::string ToJson(const Value& v, const ToJsonOptions& options, int depth, bool undefined_to_null);

// JavaScript `left.value == right.value` (loose equality; containers by identity).
bool LooseEquals(const Value& a, const Value& b);
// JavaScript `===` on the raw values.
bool StrictEquals(const Value& a, const Value& b);

}  // namespace muse::jinja
