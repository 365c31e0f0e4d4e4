// The JSON Schema compiler's internals, shared by json_schema.cc (the walk: keywords, combinators,
// $ref) and json_schema_values.cc (one instance type at a time: objects, arrays, strings,
// integers, enum / const). Not part of the module's API (compile.h is).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "src/structured/compile.h"
#include "src/structured/grammar.h"
#include "src/structured/json_lexical.h"

namespace muse::structured::json_schema {

using Json = nlohmann::ordered_json;

constexpr int kMaxDepth = 128;         // schema nesting (the compiler recurses once per level)
constexpr int kMaxCount = 10000;       // min/max items and lengths: a bound n costs O(n) rules
constexpr int kMaxCombinations = 256;  // branches of the anyOf / oneOf present in one schema

// Keywords that only annotate / that constrain (everything else is refused).
const std::set<std::string_view>& Annotations();
const std::set<std::string_view>& Constraints();
// JSON pointers: `at` + "/" + the escaped key (and index).
std::string Child(const std::string& at, std::string_view key);
std::string Child(const std::string& at, std::string_view key, size_t index);
// InvalidArgument "schema <at>: message" / "schema <at>: unsupported keyword \"X\" (note)".
absl::Status Error(const std::string& at, absl::string_view message);
absl::Status Unsupported(const std::string& at, absl::string_view keyword,
                         absl::string_view note = "");
// A readable rule name from a schema pointer's last token.
std::string RuleName(const std::string& at);
// JSON equality as JSON Schema defines it: numbers by value, objects regardless of key order.
bool JsonEqual(const Json& a, const Json& b, int depth = 0);
bool IsStringFormat(std::string_view name);
// 32 / 64 for OpenAPI's "int32" / "int64", else 0.
int IntegerFormatBits(std::string_view name);

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

std::optional<unsigned> TypeBits(std::string_view name);
unsigned TypeOf(const Json& v);

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

}  // namespace muse::structured::json_schema
