// CompileJsonSchema / JsonObjectGrammar: JSON Schema to a grammar over the serialisations of its
// instances. The supported subset and its semantics are listed in README.md ("JSON Schema"); the
// JSON lexical pieces (strings, numbers, integer ranges, formats) are in json_lexical.cc.
//
// Exactness: every keyword that constrains is either compiled exactly or refused with
// "schema <pointer>: unsupported keyword \"X\"". Where a grammar cannot express JSON Schema's
// semantics the choice made is a generator's, and documented: properties come in the schema's
// order; additional properties follow the declared ones, with keys that differ from every declared
// name (not from each other: a context-free grammar cannot keep keys distinct); oneOf is compiled
// as anyOf (exclusivity is not context-free either); numbers are spelled as in the schema's
// enum / const, integers without a fraction.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "src/structured/compile.h"
#include "src/structured/json_lexical.h"

namespace muse::structured {

namespace {

using Json = nlohmann::ordered_json;

constexpr int kMaxDepth = 128;         // schema nesting (the compiler recurses once per level)
constexpr int kMaxCount = 10000;       // min/max items and lengths: a bound n costs O(n) rules
constexpr int kMaxCombinations = 256;  // branches of the anyOf / oneOf present in one schema

// Keywords that only annotate ($defs / definitions are reached through $ref alone).
const std::set<std::string_view>& Annotations() {
  static const auto* const kSet = new std::set<std::string_view>{
      "title",      "description", "default",   "examples", "$schema",     "$comment",
      "deprecated", "readOnly",    "writeOnly", "$defs",    "definitions", "$id"};
  return *kSet;
}

const std::set<std::string_view>& Constraints() {
  static const auto* const kSet = new std::set<std::string_view>{"type",
                                                                 "enum",
                                                                 "const",
                                                                 "properties",
                                                                 "required",
                                                                 "additionalProperties",
                                                                 "items",
                                                                 "prefixItems",
                                                                 "additionalItems",
                                                                 "minItems",
                                                                 "maxItems",
                                                                 "minLength",
                                                                 "maxLength",
                                                                 "pattern",
                                                                 "format",
                                                                 "minimum",
                                                                 "maximum",
                                                                 "exclusiveMinimum",
                                                                 "exclusiveMaximum",
                                                                 "anyOf",
                                                                 "oneOf",
                                                                 "allOf",
                                                                 "$ref",
                                                                 "uniqueItems"};
  return *kSet;
}

std::string EscapeToken(std::string_view key) {
  std::string out;
  for (char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

std::string Child(const std::string& at, std::string_view key) {
  return absl::StrCat(at, "/", EscapeToken(key));
}

std::string Child(const std::string& at, std::string_view key, size_t index) {
  return absl::StrCat(Child(at, key), "/", index);
}

absl::Status Error(const std::string& at, absl::string_view message) {
  return absl::InvalidArgumentError(
      absl::StrCat("schema ", at.empty() ? std::string("(root)") : at, ": ", message));
}

absl::Status Unsupported(const std::string& at, absl::string_view keyword,
                         absl::string_view note = "") {
  return Error(at, absl::StrCat("unsupported keyword \"", keyword, "\"",
                                note.empty() ? "" : absl::StrCat(" (", note, ")")));
}

// A readable rule name from a schema pointer's last token.
std::string RuleName(const std::string& at) {
  const size_t slash = at.rfind('/');
  std::string name;
  for (char c : at.substr(slash == std::string::npos ? 0 : slash + 1)) {
    if (name.size() >= 24) break;
    name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  }
  return name.empty() ? "root" : name;
}

// JSON equality as JSON Schema defines it: numbers by value, objects regardless of key order.
bool JsonEqual(const Json& a, const Json& b, int depth = 0) {
  if (depth > kMaxDepth) return false;
  if (a.is_number() && b.is_number()) return a == b;  // nlohmann compares across number kinds
  if (a.type() != b.type()) return false;
  if (a.is_array()) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (!JsonEqual(a[i], b[i], depth + 1)) return false;
    }
    return true;
  }
  if (a.is_object()) {
    if (a.size() != b.size()) return false;
    for (const auto& [k, v] : a.items()) {
      auto it = b.find(k);
      if (it == b.end() || !JsonEqual(v, *it, depth + 1)) return false;
    }
    return true;
  }
  return a == b;
}

bool IsStringFormat(std::string_view name) {
  return name == "date" || name == "time" || name == "date-time" || name == "uuid" ||
         name == "email";
}

// 32 / 64 for OpenAPI's "int32" / "int64", else 0.
int IntegerFormatBits(std::string_view name) {
  return name == "int32" ? 32 : name == "int64" ? 64 : 0;
}

// Instance types as bits; "number" includes "integer".
enum TypeBit : unsigned {
  kNull = 1,
  kBoolean = 2,
  kObject = 4,
  kArray = 8,
  kString = 16,
  kInteger = 32,
  kNumber = 64,
  kAllTypes = 127,
};

std::optional<unsigned> TypeBits(std::string_view name) {
  if (name == "null") return kNull;
  if (name == "boolean") return kBoolean;
  if (name == "object") return kObject;
  if (name == "array") return kArray;
  if (name == "string") return kString;
  if (name == "integer") return kInteger;
  if (name == "number") return kNumber | kInteger;
  return std::nullopt;
}

unsigned TypeOf(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null:
      return kNull;
    case Json::value_t::boolean:
      return kBoolean;
    case Json::value_t::object:
      return kObject;
    case Json::value_t::array:
      return kArray;
    case Json::value_t::string:
      return kString;
    case Json::value_t::number_float: {
      const double d = v.get<double>();
      return std::isfinite(d) && std::floor(d) == d ? kInteger : kNumber;
    }
    default:
      return kInteger;
  }
}

// One keyword of a (possibly merged) schema, with the pointer of the object that holds it.
struct Entry {
  std::string key;
  const Json* value;
  std::string at;
  std::string pointer() const { return Child(at, key); }
};

// A schema object, or several merged (allOf, or an anyOf branch with its siblings).
struct View {
  std::string at;
  std::vector<Entry> entries;

  const Entry* Find(std::string_view key) const {
    for (const Entry& e : entries) {
      if (e.key == key) return &e;
    }
    return nullptr;
  }
  std::vector<const Entry*> FindAll(std::string_view key) const {
    std::vector<const Entry*> out;
    for (const Entry& e : entries) {
      if (e.key == key) out.push_back(&e);
    }
    return out;
  }
  View Without(std::initializer_list<std::string_view> keys) const {
    View v{at, {}};
    for (const Entry& e : entries) {
      if (std::find(keys.begin(), keys.end(), e.key) == keys.end()) v.entries.push_back(e);
    }
    return v;
  }
};

// Adds `schema`'s keywords to `into`. JSON Schema's keywords are conjunctive, so the union of
// two keyword sets means both schemas - unless a keyword appears in both, or one schema's
// additionalProperties / additionalItems would start to see the other's properties / items.
absl::Status Merge(View* into, const Json& schema, const std::string& at,
                   const std::string& combinator) {
  static const std::vector<std::set<std::string_view>> kGroups = {
      {"properties", "additionalProperties"}, {"items", "prefixItems", "additionalItems"}};
  const size_t before = into->entries.size();  // only keywords of other schemas can clash
  for (const auto& [key, value] : schema.items()) {
    const bool stackable = key == "type" || key == "required" || Annotations().count(key) > 0;
    for (size_t j = 0; j < before && !stackable; ++j) {
      const Entry& e = into->entries[j];
      // Two "properties" stack (their names must differ: checked when the object is compiled).
      const bool both_properties = key == "properties" && e.key == "properties";
      bool clash = e.key == key && !both_properties;
      for (const auto& group : kGroups) {
        clash |= group.count(key) && group.count(e.key) && !both_properties;
      }
      if (clash) {
        return Unsupported(at, combinator,
                           absl::StrCat("\"", key, "\" here and \"", e.key, "\" at ",
                                        e.at.empty() ? "(root)" : e.at,
                                        " constrain the same thing; only schemas with disjoint "
                                        "keywords are combined"));
      }
    }
    into->entries.push_back({key, &value, at});
  }
  return absl::OkStatus();
}

class SchemaCompiler {
 public:
  SchemaCompiler(const Json& root, const JsonSchemaOptions& options)
      : root_(root), options_(options), lex_(&b_, options.compact, options.max_whitespace) {}

  absl::StatusOr<Grammar> Run() && {
    const int32_t root = b_.AddRule("root");
    Result r = CompileTarget("", root_, 0);
    if (!r.ok()) return r.status();
    if (!*r) return Error("", "the schema accepts no value");
    b_.AddAlternative(root, {**r});
    absl::StatusOr<Grammar> g = std::move(b_).Finish(root);
    if (!g.ok()) return absl::InvalidArgumentError(absl::StrCat("schema: ", g.status().message()));
    return g;
  }

 private:
  // nullopt: the schema accepts no value (false, an empty enum, an impossible range).
  using Result = absl::StatusOr<std::optional<Symbol>>;

  Result Compile(const Json& schema, const std::string& at, int depth);
  Result CompileView(const View& v, int depth);
  Result CompileRef(const Entry& ref, int depth);
  Result CompileTarget(const std::string& pointer, const Json& target, int depth);
  Result CompileLeaf(const View& v, int depth);
  Result CompileEnum(const View& v, unsigned types);
  Result CompileObject(const View& v, int depth);
  Result CompileArray(const View& v, int depth);
  Result CompileString(const View& v);
  Result CompileInteger(const View& v);
  absl::Status AppendLiteral(const Json& value, int depth, Alternative* alt);
  absl::StatusOr<int> Count(const Entry* e, int absent);
  absl::StatusOr<std::optional<int64_t>> Bound(const Entry* e, bool lower, bool exclusive);
  Symbol Epsilon() {
    if (!epsilon_) epsilon_ = b_.Choice({{}}, "nothing");
    return *epsilon_;
  }
  static std::optional<Symbol> OneOf(GrammarBuilder& b, std::vector<Alternative> alts,
                                     std::string_view name) {
    if (alts.empty()) return std::nullopt;
    if (alts.size() == 1 && alts[0].size() == 1) return alts[0][0];
    return b.Choice(std::move(alts), name);
  }

  struct RefState {
    bool in_progress = false;
    bool done = false;
    int32_t rule = -1;  // declared when the schema refers to itself while being compiled
    std::optional<Symbol> result;
  };

  const Json& root_;
  JsonSchemaOptions options_;
  GrammarBuilder b_;
  JsonLexicon lex_;
  std::map<std::string, RefState> refs_;
  std::optional<Symbol> epsilon_;
};

SchemaCompiler::Result SchemaCompiler::Compile(const Json& schema, const std::string& at,
                                               int depth) {
  if (schema.is_boolean()) {
    if (schema.get<bool>()) return std::optional<Symbol>(lex_.AnyValue());
    return std::optional<Symbol>();
  }
  if (!schema.is_object()) return Error(at, "a schema must be an object or a boolean");
  View v{at, {}};
  for (const auto& [key, value] : schema.items()) v.entries.push_back({key, &value, at});
  return CompileView(v, depth);
}

SchemaCompiler::Result SchemaCompiler::CompileView(const View& v, int depth) {
  if (depth > kMaxDepth) return Error(v.at, absl::StrCat("nested deeper than ", kMaxDepth));
  for (const Entry& e : v.entries) {
    if (e.key == "$id" && !e.at.empty())
      return Unsupported(e.at, e.key, "allowed on the root only");
    if (e.key == "uniqueItems" && *e.value == false) continue;  // no constraint
    if (e.key == "uniqueItems" || !(Annotations().count(e.key) || Constraints().count(e.key))) {
      return Unsupported(e.at, e.key);
    }
  }
  if (const Entry* ref = v.Find("$ref")) {
    for (const Entry& e : v.entries) {
      if (e.key != "$ref" && Constraints().count(e.key) && !(e.key == "uniqueItems")) {
        return Unsupported(e.at, e.key, "beside \"$ref\"");
      }
    }
    return CompileRef(*ref, depth);
  }
  if (v.Find("allOf")) {
    View merged = v.Without({"allOf"});
    for (const Entry* e : v.FindAll("allOf")) {
      if (!e->value->is_array() || e->value->empty()) {
        return Error(e->pointer(), "\"allOf\" must be a non-empty array");
      }
      for (size_t i = 0; i < e->value->size(); ++i) {
        const Json& sub = (*e->value)[i];
        if (sub.is_boolean()) {
          if (!sub.get<bool>()) return std::optional<Symbol>();
          continue;
        }
        if (!sub.is_object())
          return Error(Child(e->at, "allOf", i), "a schema must be an object or a boolean");
        absl::Status s = Merge(&merged, sub, Child(e->at, "allOf", i), "allOf");
        if (!s.ok()) return s;
      }
    }
    return CompileView(merged, depth + 1);
  }
  // anyOf / oneOf (compiled alike: see the file comment): one branch of each, merged with the
  // siblings; the union over every choice.
  std::vector<const Entry*> unions = v.FindAll("anyOf");
  for (const Entry* e : v.FindAll("oneOf")) unions.push_back(e);
  if (unions.empty()) return CompileLeaf(v, depth);
  size_t combinations = 1;
  for (const Entry* e : unions) {
    if (!e->value->is_array() || e->value->empty()) {
      return Error(e->pointer(), absl::StrCat("\"", e->key, "\" must be a non-empty array"));
    }
    combinations *= e->value->size();
    if (combinations > kMaxCombinations) {
      return Unsupported(e->at, e->key,
                         absl::StrCat("more than ", kMaxCombinations, " branch combinations"));
    }
  }
  const View base = v.Without({"anyOf", "oneOf"});
  std::vector<Alternative> alts;
  for (size_t c = 0; c < combinations; ++c) {
    View merged = base;
    bool empty = false;
    size_t rest = c;
    for (const Entry* e : unions) {
      const size_t i = rest % e->value->size();
      rest /= e->value->size();
      const Json& sub = (*e->value)[i];
      if (sub.is_boolean()) {
        empty |= !sub.get<bool>();
        continue;
      }
      if (!sub.is_object())
        return Error(Child(e->at, e->key, i), "a schema must be an object or a boolean");
      absl::Status s = Merge(&merged, sub, Child(e->at, e->key, i), e->key);
      if (!s.ok()) return s;
    }
    if (empty) continue;
    Result r = CompileView(merged, depth + 1);
    if (!r.ok()) return r;
    if (*r) alts.push_back({**r});
  }
  return OneOf(b_, std::move(alts), absl::StrCat(RuleName(v.at), "_any_of"));
}

SchemaCompiler::Result SchemaCompiler::CompileRef(const Entry& ref, int depth) {
  if (!ref.value->is_string()) return Error(ref.pointer(), "\"$ref\" must be a string");
  const std::string& uri = ref.value->get_ref<const std::string&>();
  if (uri.empty() || uri[0] != '#') {
    return Unsupported(ref.at, "$ref",
                       absl::StrCat("remote reference \"", uri,
                                    "\"; only local references \"#/...\" are supported"));
  }
  // The fragment is a URI-encoded JSON pointer.
  std::string fragment;
  for (size_t i = 1; i < uri.size(); ++i) {
    if (uri[i] == '%' && i + 2 < uri.size() &&
        std::isxdigit(static_cast<unsigned char>(uri[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(uri[i + 2]))) {
      fragment += static_cast<char>(std::stoi(uri.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      fragment += uri[i];
    }
  }
  if (!fragment.empty() && fragment[0] != '/') {
    return Unsupported(ref.at, "$ref",
                       absl::StrCat("anchor reference \"", uri,
                                    "\"; only JSON pointer references \"#/...\" are supported"));
  }
  const Json* node = &root_;
  std::string pointer;
  for (size_t start = 1; start <= fragment.size() && !fragment.empty();) {
    size_t end = fragment.find('/', start);
    if (end == std::string::npos) end = fragment.size();
    std::string token;
    for (size_t i = start; i < end; ++i) {
      if (fragment[i] == '~' && i + 1 < end && (fragment[i + 1] == '0' || fragment[i + 1] == '1')) {
        token += fragment[++i] == '0' ? '~' : '/';
      } else {
        token += fragment[i];
      }
    }
    const Json* next = nullptr;
    if (node->is_object()) {
      auto it = node->find(token);
      if (it != node->end()) next = &*it;
    } else if (node->is_array() && !token.empty() &&
               token.find_first_not_of("0123456789") == std::string::npos && token.size() < 10 &&
               std::stoul(token) < node->size()) {
      next = &(*node)[std::stoul(token)];
    }
    if (next == nullptr) {
      return Error(ref.pointer(), absl::StrCat("$ref \"", uri, "\" does not resolve"));
    }
    node = next;
    pointer = Child(pointer, token);
    start = end + 1;
  }
  return CompileTarget(pointer, *node, depth + 1);
}

SchemaCompiler::Result SchemaCompiler::CompileTarget(const std::string& pointer, const Json& target,
                                                     int depth) {
  {
    RefState& st = refs_[pointer];
    if (st.done) return st.rule >= 0 ? std::optional<Symbol>(Symbol::Rule(st.rule)) : st.result;
    if (st.in_progress) {
      if (st.rule < 0) st.rule = b_.AddRule(absl::StrCat("ref_", RuleName(pointer)));
      return std::optional<Symbol>(Symbol::Rule(st.rule));
    }
    st.in_progress = true;
  }
  Result r = Compile(target, pointer, depth);
  RefState& st = refs_[pointer];  // std::map: stable across the inserts made meanwhile
  st.in_progress = false;
  if (!r.ok()) return r;
  st.done = true;
  st.result = *r;
  if (st.rule < 0) return r;
  if (!*r) return Error(pointer, "a recursive $ref reaches this schema, which accepts no value");
  b_.AddAlternative(st.rule, {**r});
  return std::optional<Symbol>(Symbol::Rule(st.rule));
}

SchemaCompiler::Result SchemaCompiler::CompileLeaf(const View& v, int depth) {
  unsigned types = kAllTypes;
  for (const Entry* e : v.FindAll("type")) {
    unsigned mask = 0;
    const bool is_list = e->value->is_array();
    for (const Json& t : is_list ? *e->value : Json::array({*e->value})) {
      std::optional<unsigned> bits;
      if (t.is_string()) bits = TypeBits(t.get_ref<const std::string&>());
      if (!bits) {
        return Error(e->pointer(), absl::StrCat("unknown type ", t.dump(),
                                                " (null, boolean, object, array, number, "
                                                "integer or string)"));
      }
      mask |= *bits;
    }
    types &= mask;
  }
  bool integer_format = false;
  if (const Entry* format = v.Find("format")) {
    if (!format->value->is_string()) return Error(format->pointer(), "\"format\" must be a string");
    const std::string& name = format->value->get_ref<const std::string&>();
    integer_format = IntegerFormatBits(name) > 0;
    if (!integer_format && !IsStringFormat(name)) {
      return Unsupported(format->at, "format",
                         absl::StrCat("format ", format->value->dump(),
                                      "; supported: date, time, date-time, uuid, email for "
                                      "strings, int32, int64 for integers"));
    }
    if (integer_format && (types & kNumber)) {
      return Unsupported(
          format->at, "format",
          absl::StrCat("format ", format->value->dump(), " applies to \"type\": \"integer\" only"));
    }
  }
  if (v.Find("enum") || v.Find("const")) return CompileEnum(v, types);
  std::vector<Alternative> alts;
  if (types & kNull) alts.push_back({lex_.Null()});
  if (types & kBoolean) alts.push_back({lex_.Boolean()});
  for (auto [bit, compile] : {std::pair{kObject, &SchemaCompiler::CompileObject},
                              std::pair{kArray, &SchemaCompiler::CompileArray}}) {
    if (!(types & bit)) continue;
    Result r = (this->*compile)(v, depth);
    if (!r.ok()) return r;
    if (*r) alts.push_back({**r});
  }
  if (types & kString) {
    Result r = CompileString(v);
    if (!r.ok()) return r;
    if (*r) alts.push_back({**r});
  }
  if (types & kNumber) {
    for (const char* k : {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}) {
      if (const Entry* e = v.Find(k)) {
        return Unsupported(e->at, k, "bounds are supported for \"type\": \"integer\" only");
      }
    }
    alts.push_back({lex_.Number()});
  } else if (types & kInteger) {
    Result r = CompileInteger(v);
    if (!r.ok()) return r;
    if (*r) alts.push_back({**r});
  }
  return OneOf(b_, std::move(alts), RuleName(v.at));
}

SchemaCompiler::Result SchemaCompiler::CompileEnum(const View& v, unsigned types) {
  for (const Entry& e : v.entries) {
    if (Constraints().count(e.key) && e.key != "type" && e.key != "enum" && e.key != "const") {
      return Unsupported(e.at, e.key, v.Find("enum") ? "beside \"enum\"" : "beside \"const\"");
    }
  }
  std::optional<std::vector<const Json*>> values;
  for (const Entry& e : v.entries) {
    std::vector<const Json*> listed;
    if (e.key == "const") {
      listed.push_back(e.value);
    } else if (e.key == "enum") {
      if (!e.value->is_array()) return Error(e.pointer(), "\"enum\" must be an array");
      for (const Json& x : *e.value) listed.push_back(&x);
    } else {
      continue;
    }
    if (!values) {
      values = std::move(listed);
      continue;
    }
    std::vector<const Json*> both;
    for (const Json* x : *values) {
      if (std::any_of(listed.begin(), listed.end(),
                      [&](const Json* y) { return JsonEqual(*x, *y); })) {
        both.push_back(x);
      }
    }
    values = std::move(both);
  }
  std::vector<Alternative> alts;
  std::vector<const Json*> kept;
  for (const Json* x : *values) {
    if (!(TypeOf(*x) & types)) continue;
    if (std::any_of(kept.begin(), kept.end(), [&](const Json* y) { return JsonEqual(*x, *y); })) {
      continue;
    }
    kept.push_back(x);
    Alternative alt;
    absl::Status s = AppendLiteral(*x, 0, &alt);
    if (!s.ok()) return Error(v.at, s.message());
    alts.push_back(std::move(alt));
  }
  if (alts.empty()) return std::optional<Symbol>();
  return std::optional<Symbol>(b_.Choice(std::move(alts), absl::StrCat(RuleName(v.at), "_enum")));
}

absl::Status SchemaCompiler::AppendLiteral(const Json& value, int depth, Alternative* alt) {
  if (depth > kMaxDepth) {
    return absl::InvalidArgumentError(absl::StrCat("enum value nested deeper than ", kMaxDepth));
  }
  const bool object = value.is_object();
  if (!object && !value.is_array()) {
    b_.AppendLiteral(value.dump(), alt);
    return absl::OkStatus();
  }
  alt->push_back(b_.Byte(object ? '{' : '['));
  lex_.AppendWs(alt);
  bool first = true;
  for (const auto& [key, item] : value.items()) {
    if (!first) lex_.AppendComma(alt);
    first = false;
    if (object) {
      b_.AppendLiteral(Json(key).dump(), alt);
      lex_.AppendColon(alt);
    }
    absl::Status s = AppendLiteral(item, depth + 1, alt);
    if (!s.ok()) return s;
  }
  if (!first) lex_.AppendWs(alt);
  alt->push_back(b_.Byte(object ? '}' : ']'));
  return absl::OkStatus();
}

SchemaCompiler::Result SchemaCompiler::CompileObject(const View& v, int depth) {
  struct Property {
    std::string name;
    std::optional<Symbol> value;
    bool required = false;
  };
  std::vector<Property> props;
  std::vector<std::string> required;
  for (const Entry* e : v.FindAll("required")) {
    if (!e->value->is_array())
      return Error(e->pointer(), "\"required\" must be an array of strings");
    for (const Json& name : *e->value) {
      if (!name.is_string()) return Error(e->pointer(), "\"required\" must be an array of strings");
      required.push_back(name.get<std::string>());
    }
  }
  auto is_required = [&](const std::string& name) {
    return std::find(required.begin(), required.end(), name) != required.end();
  };
  std::map<std::string, std::string> declared_at;
  for (const Entry* e : v.FindAll("properties")) {
    if (!e->value->is_object()) return Error(e->pointer(), "\"properties\" must be an object");
    for (const auto& [name, schema] : e->value->items()) {
      auto [it, fresh] = declared_at.emplace(name, e->pointer());
      if (!fresh) {
        return Unsupported(e->at, "properties",
                           absl::StrCat("\"", name, "\" is also declared at ", it->second,
                                        "; one property in two combined schemas is not supported"));
      }
      Result r = Compile(schema, Child(e->pointer(), name), depth + 1);
      if (!r.ok()) return r;
      props.push_back({name, *r, is_required(name)});
    }
  }
  std::optional<Symbol> additional;
  if (const Entry* e = v.Find("additionalProperties")) {
    Result r = Compile(*e->value, e->pointer(), depth + 1);
    if (!r.ok()) return r;
    additional = *r;
  } else if (!options_.strict) {
    additional = lex_.AnyValue();
  }
  // Required names without a declared schema: additionalProperties decides their values.
  for (const std::string& name : required) {
    if (std::none_of(props.begin(), props.end(),
                     [&](const Property& p) { return p.name == name; })) {
      props.push_back({name, additional, true});
    }
  }
  std::vector<std::string> names;
  for (const Property& p : props) {
    if (p.required && !p.value) return std::optional<Symbol>();
    names.push_back(p.name);
  }
  std::optional<Symbol> extra;  // one additional "key": value
  if (additional) {
    absl::StatusOr<Symbol> key = lex_.KeyNotIn(names);
    if (!key.ok()) return Error(v.at, key.status().message());
    Alternative kv{*key};
    lex_.AppendColon(&kv);
    kv.push_back(*additional);
    extra = b_.Choice({std::move(kv)}, "additional_property");
  }
  // Properties in order, each optional one skippable. rest(i): what follows once something was
  // written (each entry led by a comma); first(i): a non-empty start with nothing written yet.
  std::optional<Symbol> first;
  Symbol rest =
      extra ? b_.Star(b_.Choice({{lex_.Comma(), *extra}}, "comma_additional")) : Epsilon();
  if (extra) first = b_.SeparatedList(*extra, lex_.Comma(), 1, -1);
  const std::string name = RuleName(v.at);
  for (size_t i = props.size(); i-- > 0;) {
    const Property& p = props[i];
    std::optional<Symbol> kv;
    if (p.value) {
      Alternative alt;
      b_.AppendLiteral(Json(p.name).dump(), &alt);
      lex_.AppendColon(&alt);
      alt.push_back(*p.value);
      kv = b_.Choice({std::move(alt)}, absl::StrCat("property_", RuleName(p.name)));
    }
    std::vector<Alternative> rest_alts, first_alts;
    if (!p.required) {
      rest_alts.push_back({rest});
      if (first) first_alts.push_back({*first});
    }
    if (kv) {
      rest_alts.push_back({lex_.Comma(), *kv, rest});
      first_alts.push_back({*kv, rest});
    }
    rest = b_.Choice(std::move(rest_alts), absl::StrCat(name, "_after_", i));
    first = OneOf(b_, std::move(first_alts), absl::StrCat(name, "_from_", i));
  }
  std::vector<Alternative> alts;
  if (required.empty()) {
    Alternative empty{b_.Byte('{')};
    lex_.AppendWs(&empty);
    empty.push_back(b_.Byte('}'));
    alts.push_back(std::move(empty));
  }
  if (first) {
    Alternative full{b_.Byte('{')};
    lex_.AppendWs(&full);
    full.push_back(*first);
    lex_.AppendWs(&full);
    full.push_back(b_.Byte('}'));
    alts.push_back(std::move(full));
  }
  return OneOf(b_, std::move(alts), absl::StrCat(name, "_object"));
}

absl::StatusOr<int> SchemaCompiler::Count(const Entry* e, int absent) {
  if (e == nullptr) return absent;
  const Json& x = *e->value;
  if (!x.is_number() || TypeOf(x) != kInteger || x.get<double>() < 0) {
    return Error(e->pointer(), absl::StrCat("\"", e->key, "\" must be a non-negative integer"));
  }
  if (x.get<double>() > kMaxCount) {
    return Unsupported(e->at, e->key,
                       absl::StrCat(x.dump(), " is above the supported ", kMaxCount));
  }
  return static_cast<int>(x.get<double>());
}

SchemaCompiler::Result SchemaCompiler::CompileArray(const View& v, int depth) {
  const Entry* items = v.Find("items");
  const Entry* prefix_items = v.Find("prefixItems");
  std::vector<std::optional<Symbol>> prefix;
  std::optional<Symbol> rest = lex_.AnyValue();
  auto compile_prefix = [&](const Entry* e) -> absl::Status {
    for (size_t i = 0; i < e->value->size(); ++i) {
      Result r = Compile((*e->value)[i], Child(e->at, e->key, i), depth + 1);
      if (!r.ok()) return r.status();
      prefix.push_back(*r);
    }
    return absl::OkStatus();
  };
  const Entry* rest_entry = items;
  if (prefix_items) {  // 2020-12: prefixItems, then items for the rest
    if (!prefix_items->value->is_array())
      return Error(prefix_items->pointer(), "\"prefixItems\" must be an array");
    if (items && items->value->is_array())
      return Error(items->pointer(), "\"items\" must be a schema beside \"prefixItems\"");
    if (absl::Status s = compile_prefix(prefix_items); !s.ok()) return s;
  } else if (items &&
             items->value->is_array()) {  // draft 7 / 2019-09: items array + additionalItems
    if (absl::Status s = compile_prefix(items); !s.ok()) return s;
    rest_entry = v.Find("additionalItems");
  }
  // (additionalItems without an items array constrains nothing.)
  if (rest_entry) {
    Result r = Compile(*rest_entry->value, rest_entry->pointer(), depth + 1);
    if (!r.ok()) return r;
    rest = *r;
  }
  absl::StatusOr<int> min = Count(v.Find("minItems"), 0);
  if (!min.ok()) return min.status();
  absl::StatusOr<int> max = Count(v.Find("maxItems"), -1);
  if (!max.ok()) return max.status();
  if (*max >= 0 && *min > *max) return std::optional<Symbol>();
  const int k = static_cast<int>(prefix.size());
  auto within = [&](int n) { return *max < 0 || n <= *max; };
  // tail(i), i >= 1: what may follow once i items are written (each led by a comma).
  std::optional<Symbol> tail;  // tail(i) for the i being built, from k down to 1
  for (int i = std::max(k, 1); i >= 1; --i) {
    if (!within(i)) {
      tail.reset();
    } else if (i >= k) {
      if (rest) {
        tail = b_.Repeat(b_.Choice({{lex_.Comma(), *rest}}, "comma_item"), std::max(0, *min - i),
                         *max < 0 ? -1 : *max - i);
      } else {
        tail = i >= *min ? std::optional<Symbol>(Epsilon()) : std::nullopt;
      }
    } else {
      std::vector<Alternative> alts;
      if (i >= *min) alts.push_back({});
      if (prefix[i] && tail && within(i + 1)) alts.push_back({lex_.Comma(), *prefix[i], *tail});
      tail = OneOf(b_, std::move(alts), absl::StrCat(RuleName(v.at), "_items_after_", i));
    }
  }
  std::optional<Symbol> content;  // a non-empty item list
  if (within(1)) {
    if (k > 0) {
      if (prefix[0] && tail) content = b_.Choice({{*prefix[0], *tail}}, "items");
    } else if (rest) {
      content = b_.SeparatedList(*rest, lex_.Comma(), std::max(1, *min), *max);
    }
  }
  std::vector<Alternative> alts;
  if (*min == 0) {
    Alternative empty{b_.Byte('[')};
    lex_.AppendWs(&empty);
    empty.push_back(b_.Byte(']'));
    alts.push_back(std::move(empty));
  }
  if (content) {
    Alternative full{b_.Byte('[')};
    lex_.AppendWs(&full);
    full.push_back(*content);
    lex_.AppendWs(&full);
    full.push_back(b_.Byte(']'));
    alts.push_back(std::move(full));
  }
  return OneOf(b_, std::move(alts), absl::StrCat(RuleName(v.at), "_array"));
}

// The pattern is unanchored in JSON Schema; a leading ^ / trailing $ anchors it, unless it is an
// alternation at the top level (then the anchors belong to single branches: refused).
struct PatternAnchors {
  bool start = false;
  bool end = false;
  bool top_level_alternation = false;
};

PatternAnchors Anchors(std::string_view p) {
  PatternAnchors a;
  int depth = 0;
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\') {
      ++i;
      continue;
    }
    if (in_class) {
      in_class = c != ']';
    } else if (c == '[') {
      in_class = true;
      if (i + 1 < p.size() && p[i + 1] == ']') ++i;  // "[]..." : "]" first is literal
      if (i + 2 < p.size() && p[i + 1] == '^' && p[i + 2] == ']') i += 2;
    } else if (c == '(') {
      ++depth;
    } else if (c == ')') {
      --depth;
    } else if (c == '|' && depth == 0) {
      a.top_level_alternation = true;
    } else if (c == '$' && i + 1 == p.size()) {
      a.end = true;
    }
  }
  a.start = !p.empty() && p[0] == '^';
  return a;
}

SchemaCompiler::Result SchemaCompiler::CompileString(const View& v) {
  const Entry* format = v.Find("format");
  if (format && IntegerFormatBits(format->value->get_ref<const std::string&>())) {
    format = nullptr;  // an integer format says nothing about strings
  }
  const Entry* pattern = v.Find("pattern");
  const Entry* min_length = v.Find("minLength");
  const Entry* max_length = v.Find("maxLength");
  if (format) {
    for (const Entry* e : {pattern, min_length, max_length}) {
      if (e) return Unsupported(e->at, e->key, "beside \"format\"");
    }
    if (!format->value->is_string()) return Error(format->pointer(), "\"format\" must be a string");
    absl::StatusOr<Symbol> s = lex_.Format(format->value->get_ref<const std::string&>());
    if (!s.ok()) {
      return Unsupported(format->at, "format",
                         absl::StrCat("format ", format->value->dump(),
                                      "; supported: date, time, date-time, uuid, email"));
    }
    return std::optional<Symbol>(*s);
  }
  if (pattern) {
    for (const Entry* e : {min_length, max_length}) {
      if (e) return Unsupported(e->at, e->key, "beside \"pattern\"");
    }
    if (!pattern->value->is_string())
      return Error(pattern->pointer(), "\"pattern\" must be a string");
    const std::string& p = pattern->value->get_ref<const std::string&>();
    const PatternAnchors a = Anchors(p);
    if (a.top_level_alternation && (a.start || a.end)) {
      return Unsupported(pattern->at, "pattern",
                         "anchors inside a top-level alternation; group the alternation");
    }
    absl::StatusOr<Grammar> text = CompileRegex(p);
    if (!text.ok()) {
      return Error(pattern->pointer(),
                   absl::StrCat("pattern ", pattern->value->dump(), ": ", text.status().message()));
    }
    absl::StatusOr<Symbol> s = lex_.StringMatching(*text, !a.start, !a.end);
    if (!s.ok()) return Error(pattern->pointer(), s.status().message());
    return std::optional<Symbol>(*s);
  }
  absl::StatusOr<int> min = Count(min_length, 0);
  if (!min.ok()) return min.status();
  absl::StatusOr<int> max = Count(max_length, -1);
  if (!max.ok()) return max.status();
  if (*max >= 0 && *min > *max) return std::optional<Symbol>();
  return std::optional<Symbol>(lex_.StringOfLength(*min, *max));
}

absl::StatusOr<std::optional<int64_t>> SchemaCompiler::Bound(const Entry* e, bool lower,
                                                             bool exclusive) {
  if (e == nullptr) return std::optional<int64_t>();
  const Json& x = *e->value;
  if (!x.is_number()) {
    return Error(e->pointer(), absl::StrCat("\"", e->key, "\" must be a number"));
  }
  // The least (lower) / greatest (upper) integer the bound admits.
  long double b;
  if (x.is_number_unsigned()) {
    b = static_cast<long double>(x.get<uint64_t>());
  } else if (x.is_number_integer()) {
    b = static_cast<long double>(x.get<int64_t>());
  } else {
    b = x.get<double>();
  }
  if (exclusive) {
    b = lower ? std::floor(b) + 1 : std::ceil(b) - 1;
  } else {
    b = lower ? std::ceil(b) : std::floor(b);
  }
  if (!(b >= -9223372036854775807.0L - 1 && b <= 9223372036854775807.0L)) {
    return Error(e->pointer(), absl::StrCat("\"", e->key, "\" ", x.dump(),
                                            " is outside the supported 64-bit integer range"));
  }
  return std::optional<int64_t>(static_cast<int64_t>(b));
}

SchemaCompiler::Result SchemaCompiler::CompileInteger(const View& v) {
  std::optional<int64_t> lo, hi;
  for (auto [key, lower, exclusive] :
       {std::tuple{"minimum", true, false}, std::tuple{"exclusiveMinimum", true, true},
        std::tuple{"maximum", false, false}, std::tuple{"exclusiveMaximum", false, true}}) {
    absl::StatusOr<std::optional<int64_t>> b = Bound(v.Find(key), lower, exclusive);
    if (!b.ok()) return b.status();
    if (!*b) continue;
    std::optional<int64_t>& side = lower ? lo : hi;
    side = !side ? **b : lower ? std::max(*side, **b) : std::min(*side, **b);
  }
  if (const Entry* format = v.Find("format")) {
    // OpenAPI's integer formats: the two's complement range of that many bits.
    if (const int bits = IntegerFormatBits(format->value->get_ref<const std::string&>())) {
      const int64_t max =
          bits == 64 ? std::numeric_limits<int64_t>::max() : (int64_t{1} << (bits - 1)) - 1;
      lo = std::max(lo.value_or(-max - 1), -max - 1);
      hi = std::min(hi.value_or(max), max);
    }
  }
  return lex_.IntegerRange(lo, hi);
}

}  // namespace

absl::StatusOr<Grammar> CompileJsonSchema(std::string_view schema_json,
                                          const JsonSchemaOptions& options) {
  Json schema;
  try {
    schema = Json::parse(schema_json);
  } catch (const Json::parse_error& e) {
    std::string what = e.what();
    const size_t bracket = what.find("] ");
    if (bracket != std::string::npos) what = what.substr(bracket + 2);
    return absl::InvalidArgumentError(
        absl::StrCat("schema is not JSON (byte ", e.byte, "): ", what));
  }
  return SchemaCompiler(schema, options).Run();
}

absl::StatusOr<Grammar> JsonObjectGrammar(const JsonSchemaOptions& options) {
  GrammarBuilder b;
  JsonLexicon lex(&b, options.compact, options.max_whitespace);
  const int32_t root = b.AddRule("root");
  b.AddAlternative(root, {lex.AnyObject()});
  return std::move(b).Finish(root);
}

}  // namespace muse::structured
