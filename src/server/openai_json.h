// Reading an OpenAI-shaped JSON body (the HTTP face's request side): typed field access whose
// errors are InvalidArgument "<param>: must be <type>, got <type>", the parameter first.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace muse::server::openai_json {

using json = nlohmann::ordered_json;  // keeps key order: JSON schemas' property order matters

inline absl::Status Bad(const std::string& param, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(param, ": ", what));
}

inline const char* TypeName(const json& j) {
  switch (j.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "integer";
    case json::value_t::number_float:
      return "number";
    case json::value_t::string:
      return "string";
    case json::value_t::array:
      return "array";
    case json::value_t::object:
      return "object";
    default:
      return "binary";
  }
}

inline absl::Status WrongType(const std::string& param, const char* want, const json& got) {
  return Bad(param, absl::StrCat("must be ", want, ", got ", TypeName(got)));
}

// The member `key` of object `o`; null when absent or JSON null (OpenAI treats both as unset).
inline const json* Field(const json& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return nullptr;
  return &*it;
}

inline absl::Status AsString(const json& j, const std::string& param, std::string* out) {
  if (!j.is_string()) return WrongType(param, "a string", j);
  *out = j.get<std::string>();
  return absl::OkStatus();
}

inline absl::Status AsBool(const json& j, const std::string& param, bool* out) {
  if (!j.is_boolean()) return WrongType(param, "a boolean", j);
  *out = j.get<bool>();
  return absl::OkStatus();
}

}  // namespace muse::server::openai_json
