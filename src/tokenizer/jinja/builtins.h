// Built-in members of values (string and dict methods), tests and global functions,
// with the semantics of @huggingface/jinja.
#pragma once

#include <string>
#include <string_view>

#include "src/tokenizer/jinja/environment.h"
#include "src/tokenizer/jinja/value.h"

namespace muse::jinja {

// The `builtins` map of a value: methods (as functions) and `length`. Undefined if absent.
Value BuiltinMember(const Value& object, const std::string& name);
// Every name BuiltinMember may return as a function, for load-time checks of method calls.
bool IsKnownMethod(std::string_view name);

bool IsKnownTest(std::string_view name);
// `arg` is the second operand of equalto/eq (selectattr passes it).
bool RunTest(std::string_view name, const Value& operand, const Value* arg = nullptr);

// Declares true/false/none (and title-case forms), namespace, raise_exception, range, strftime_now.
void SetupGlobals(Environment& env);
bool IsGlobalFunction(std::string_view name);

// dict.items(), .keys(), .values().
Value ObjectItems(const Value& object);
Value ObjectKeys(const Value& object);

// Sort order of the `sort` filter and dictsort (-1, 0, 1); fails on mixed types.
int CompareValues(const Value& a, const Value& b, bool case_sensitive);
// `attribute="a.b.0"` lookup used by map and sort.
Value GetAttributeValue(const Value& item, const std::string& path);

// JavaScript's `value.toString()` on the raw value (what `~` and string `+` use).
std::string RawToString(const Value& v);

// Python-style slicing over any indexable sequence (utils.slice).
std::vector<size_t> SliceIndices(size_t length, const Value& start, const Value& stop,
                                 const Value& step);

}  // namespace muse::jinja
