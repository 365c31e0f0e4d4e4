// Load-time checks: anything the interpreter cannot evaluate (unknown filter, test, function
// or method) is rejected when the template is parsed, never discovered mid-render.
#pragma once

#include "absl/status/status.h"
#include "src/tokenizer/jinja/ast.h"

namespace muse::jinja {

absl::Status ValidateProgram(const NodeList& program);

}  // namespace muse::jinja
