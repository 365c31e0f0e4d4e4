// The JSON Schema compiler, one instance type at a time: enum / const values, objects, arrays,
// strings and integers (json_schema_compiler.h; the walk over keywords is in json_schema.cc).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "src/structured/json_schema_compiler.h"

namespace muse::structured::json_schema {

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

namespace {

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

}  // namespace

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
    absl::StatusOr<Grammar> text = CompileRegex(p, RegexDialect::kEcmaScript);
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

}  // namespace muse::structured::json_schema
