#include "src/tokenizer/jinja/chat_template.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "src/common/status.h"
#include "src/tokenizer/jinja/ast.h"
#include "src/tokenizer/jinja/builtins.h"
#include "src/tokenizer/jinja/environment.h"
#include "src/tokenizer/jinja/interpreter.h"
#include "src/tokenizer/jinja/json_value.h"
#include "src/tokenizer/jinja/lexer.h"
#include "src/tokenizer/jinja/parser.h"
#include "src/tokenizer/jinja/validate.h"

namespace muse::jinja {

struct ChatTemplate::Program {
  NodeList statements;
};

absl::StatusOr<ChatTemplate> ChatTemplate::Parse(std::string source) {
  ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenize(source));
  ASSIGN_OR_RETURN(NodeList statements, ParseTokens(tokens));
  RETURN_IF_ERROR(ValidateProgram(statements));
  auto program = std::make_shared<Program>();
  program->statements = std::move(statements);
  return ChatTemplate(std::move(source), std::move(program));
}

template <typename Json>
absl::StatusOr<std::string> ChatTemplate::RenderImpl(const Json& context) const {
  if (!context.is_object() && !context.is_null()) {
    return absl::InvalidArgumentError("jinja: render context must be a JSON object");
  }
  try {
    auto global = std::make_shared<Environment>();
    SetupGlobals(*global);
    if (context.is_object()) {
      const Value values = FromJson(context);
      for (const auto& [key, value] : values.object->entries()) {
        if (global->HasOwn(key)) Fail(absl::StrCat("Variable already declared: ", key));
        global->Set(key, value);
      }
    }
    Interpreter interpreter;
    return interpreter.Run(program_->statements, global);
  } catch (const RenderError& e) {
    if (e.user_raised) return absl::InvalidArgumentError(e.message);
    return absl::InvalidArgumentError(absl::StrCat("jinja: render error: ", e.message));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("jinja: render error: ", e.what()));
  }
}

absl::StatusOr<std::string> ChatTemplate::Render(const nlohmann::json& context) const {
  return RenderImpl(context);
}

absl::StatusOr<std::string> ChatTemplate::Render(const nlohmann::ordered_json& context) const {
  return RenderImpl(context);
}

}  // namespace muse::jinja
