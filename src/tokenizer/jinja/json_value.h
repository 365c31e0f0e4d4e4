// Conversion of nlohmann JSON into runtime values, as the reference's convertToRuntimeValues
// sees a JSON-parsed JavaScript object (integral numbers become integers; integer-like keys
// come first, as Object.entries orders them).
#pragma once

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "src/tokenizer/jinja/value.h"

namespace muse::jinja {

// A canonical array index ("0", "17", not "017"), which JavaScript objects enumerate first.
inline bool IsArrayIndexKey(const std::string& key) {
  if (key.empty() || key.size() > 10 || (key.size() > 1 && key[0] == '0')) return false;
  for (char c : key) {
    if (c < '0' || c > '9') return false;
  }
  return std::stoull(key) < 4294967295ULL;
}

// Fails (RenderError) past kMaxValueDepth levels before descending further: a request's JSON (tool
// parameters, say) can nest far deeper than the stack allows.
template <typename Json>
Value FromJson(const Json& j, int depth = 0) {
  if (depth >= kMaxValueDepth && (j.is_array() || j.is_object())) {
    Fail(absl::StrCat("JSON nesting exceeds the limit of ", kMaxValueDepth, " levels"));
  }
  switch (j.type()) {
    case nlohmann::json::value_t::null:
    case nlohmann::json::value_t::discarded:
      return Value::Null();
    case nlohmann::json::value_t::boolean:
      return Value::Bool(j.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value::Int(static_cast<double>(j.template get<int64_t>()));
    case nlohmann::json::value_t::number_unsigned:
      return Value::Int(static_cast<double>(j.template get<uint64_t>()));
    case nlohmann::json::value_t::number_float: {
      const double d = j.template get<double>();
      return (std::isfinite(d) && std::trunc(d) == d) ? Value::Int(d) : Value::Float(d);
    }
    case nlohmann::json::value_t::string:
      return Value::String(j.template get<std::string>());
    case nlohmann::json::value_t::array: {
      Array items;
      items.reserve(j.size());
      for (const auto& item : j) items.push_back(FromJson(item, depth + 1));
      return Value::MakeArray(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      std::vector<std::pair<unsigned long long, std::string>> index_keys;
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (IsArrayIndexKey(it.key())) index_keys.emplace_back(std::stoull(it.key()), it.key());
      }
      std::sort(index_keys.begin(), index_keys.end());
      ObjectMap map;
      for (const auto& [n, key] : index_keys) map.Set(key, FromJson(j.at(key), depth + 1));
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (!IsArrayIndexKey(it.key())) map.Set(it.key(), FromJson(it.value(), depth + 1));
      }
      return Value::MakeObject(std::move(map));
    }
    case nlohmann::json::value_t::binary:
      break;
  }
  return Value::Null();
}

}  // namespace muse::jinja
