// The HTTP face's structured-output parameters -> v1::ResponseFormat (compiled later by the core,
// structured_output.h). Accepted, at most one of them per request:
//   OpenAI   response_format: {type: text | json_object | json_schema,
//                              json_schema: {name, description, schema, strict}}
//   vLLM     guided_json (a schema object or its JSON text), guided_regex, guided_grammar
//   (GBNF-like
//            EBNF), guided_choice (strings); guided_decoding_backend is accepted and ignored
//   vLLM     structured_outputs: {json | regex | choice | grammar | json_object,
//                                 disable_any_whitespace, disable_additional_properties}
// JSON output is compact unless structured_outputs.disable_any_whitespace is false. json_schema's
// `strict` (default true here, where OpenAI's is false: the schema is always enforced) decides
// whether objects that do not say additionalProperties allow other properties (false: JSON
// Schema's default, they do). Schema objects keep their key order: strict output follows it.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "muse/v1/inference.pb.h"
#include "src/common/status.h"

namespace muse::server {

// Where the request's constraint came from, to rename the core's "response_format..." errors.
struct ConstraintParam {
  std::string param;  // "response_format", "guided_json", "structured_outputs", ...; "" = none
  std::string field;  // the constraint itself: "response_format.json_schema.schema", ...
};

// `body` (the request object) -> `out`. Errors are InvalidArgument naming the parameter.
absl::Status ParseResponseFormat(const nlohmann::ordered_json& body, v1::ResponseFormat* out,
                                 ConstraintParam* where);

}  // namespace muse::server
