// Variable scopes. Lookups walk the parent chain; assignments always bind in the current scope.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "src/tokenizer/jinja/value.h"

namespace muse::jinja {

class Environment {
 public:
  explicit Environment(EnvPtr parent = nullptr) : parent_(std::move(parent)) {}

  static EnvPtr Child(const EnvPtr& parent) { return std::make_shared<Environment>(parent); }

  void Set(const std::string& name, Value value) { variables_[name] = std::move(value); }
  bool HasOwn(const std::string& name) const { return variables_.count(name) > 0; }

  // Undefined when no scope declares `name`.
  Value Lookup(const std::string& name) const {
    for (const Environment* env = this; env != nullptr; env = env->parent_.get()) {
      auto it = env->variables_.find(name);
      if (it != env->variables_.end()) return it->second;
    }
    return Value::Undefined();
  }

 private:
  EnvPtr parent_;
  std::unordered_map<std::string, Value> variables_;
};

}  // namespace muse::jinja
