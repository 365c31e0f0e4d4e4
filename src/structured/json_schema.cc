// CompileJsonSchema / JsonObjectGrammar: JSON Schema to a grammar over the serialisations of its
// instances. The supported subset and its semantics are listed in README.md ("JSON Schema"). This
// file walks the schema (keywords, combinators, $ref); json_schema_values.cc compiles one instance
// type at a time and json_lexical.cc builds JSON's lexical pieces.
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
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "src/structured/compile.h"
#include "src/structured/json_schema_compiler.h"

namespace muse::structured {
namespace json_schema {

namespace {

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

}  // namespace

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

absl::Status Unsupported(const std::string& at, absl::string_view keyword, absl::string_view note) {
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
bool JsonEqual(const Json& a, const Json& b, int depth) {
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

namespace {

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

}  // namespace

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

}  // namespace json_schema

absl::StatusOr<Grammar> CompileJsonSchema(std::string_view schema_json,
                                          const JsonSchemaOptions& options) {
  json_schema::Json schema;
  try {
    schema = json_schema::Json::parse(schema_json);
  } catch (const json_schema::Json::parse_error& e) {
    std::string what = e.what();
    const size_t bracket = what.find("] ");
    if (bracket != std::string::npos) what = what.substr(bracket + 2);
    return absl::InvalidArgumentError(
        absl::StrCat("schema is not JSON (byte ", e.byte, "): ", what));
  } catch (const json_schema::Json::exception& e) {  // e.g. a number out of double's range
    std::string what = e.what();
    const size_t bracket = what.find("] ");
    if (bracket != std::string::npos) what = what.substr(bracket + 2);
    return absl::InvalidArgumentError(absl::StrCat("schema is not JSON: ", what));
  }
  try {
    return json_schema::SchemaCompiler(schema, options).Run();
  } catch (const json_schema::Json::exception& e) {
    // Every value is type-checked before use, so this is a bug; it still must not escape.
    return absl::InternalError(absl::StrCat("schema: ", e.what()));
  }
}

absl::StatusOr<Grammar> JsonObjectGrammar(const JsonSchemaOptions& options) {
  GrammarBuilder b;
  JsonLexicon lex(&b, options.compact, options.max_whitespace);
  const int32_t root = b.AddRule("root");
  b.AddAlternative(root, {lex.AnyObject()});
  return std::move(b).Finish(root);
}

}  // namespace muse::structured
