// The HTTP face's request side: an OpenAI-shaped JSON body (POST /v1/chat/completions,
// /v1/completions, vLLM's /tokenize) -> the core's v1 request messages, and any error (the
// core's or this file's) -> an OpenAI error ({"error": {message, type, param, code}}) with its
// HTTP status. Only translation lives here: every range check, the chat template, images, auth
// and quotas are the core's (request_builder, admission). Plain C++ (nlohmann-json), no sockets.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "muse/v1/inference.pb.h"
#include "src/chat/forced_tool_call.h"
#include "src/common/status.h"
#include "src/server/openai_response_format.h"

namespace muse::server {

enum class OpenAiEndpoint { kChat, kCompletions };

struct OpenAiRequest {
  OpenAiEndpoint endpoint = OpenAiEndpoint::kChat;
  // One per prompt: chat has one; /v1/completions one per entry of a prompt array (choice index
  // = prompt index * n + sample index).
  std::vector<v1::GenerateRequest> prompts;
  std::string model;  // as sent (empty = the served model); echoed in responses
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;       // chat: logprobs; completions: logprobs != null
  int n = 1;
  // Which of max_tokens / max_completion_tokens the client sent (names core errors), and
  // whether none was sent (chat then fills the context, as vLLM does).
  std::string max_tokens_param = "max_tokens";
  bool max_tokens_set = false;
  // Which parameter carried the structured-output constraint (names the core's compile errors).
  ConstraintParam constraint;
  // Chat tools (also copied into prompts[0].tools for the chat template) and tool_choice:
  // "none" (also the default without tools), "auto" (default with tools), "required" or a named
  // function. "required" and a named function set prompts[0].response_format to the forced
  // call's JSON schema (src/chat/forced_tool_call.h), with `constraint` naming tool_choice.
  std::vector<chat::ToolSpec> tools;
  enum class ToolChoice { kNone, kAuto, kRequired, kNamed };
  ToolChoice tool_choice = ToolChoice::kNone;
  std::string tool_choice_name;     // kNamed
  bool parallel_tool_calls = true;  // false + required: exactly one call
};

// Body -> request. Errors are InvalidArgument whose message starts with the OpenAI parameter,
// e.g. "messages[0].content[1].image_url: ..." or "temperature: must be a number, got string";
// malformed JSON and invalid UTF-8 name the place in the body where parsing stopped.
absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(OpenAiEndpoint endpoint, std::string_view body);

// vLLM's POST /tokenize body ({prompt | messages, add_generation_prompt, add_special_tokens,
// return_token_strs}) and POST /detokenize ({tokens}).
struct TokenizeHttpRequest {
  v1::TokenizeRequest request;
  bool add_special_tokens = true;
};
absl::StatusOr<TokenizeHttpRequest> ParseTokenizeRequest(std::string_view body);
absl::StatusOr<std::vector<int32_t>> ParseDetokenizeRequest(std::string_view body,
                                                            std::string* model);

// Renames the core's proto field path at the start of an error message to the OpenAI parameter
// the client sent ("sampling.top_p: ..." -> "top_p: ...", "stopping.max_tokens" ->
// "max_completion_tokens" when that was sent, "input" -> "messages" / "prompt",
// "prompt_token_ids[3]" -> "prompt[3]", "response_format.json_schema" -> "guided_json" or
// "response_format.json_schema.schema" as sent). With several prompts, prompt errors name the
// prompt: "prompt[<prompt_index>]".
absl::Status RenameCoreError(const absl::Status& status, const OpenAiRequest& request,
                             int prompt_index = 0);

struct HttpError {
  int status = 500;
  std::string body;       // {"error": {...}}
  int retry_after_s = 0;  // > 0: send Retry-After (429)
};
// absl code -> HTTP status (InvalidArgument / Unimplemented 400, Unauthenticated 401,
// PermissionDenied 403, NotFound 404, over-limit images 413, ResourceExhausted 429,
// Unavailable 503, DeadlineExceeded 504, else 500). `param` is the message's leading field.
HttpError ToHttpError(const absl::Status& status);
// For errors the HTTP layer itself finds (413 body, 431 headers, 404 route, 405 method).
HttpError MakeHttpError(int http_status, const std::string& message, const std::string& type,
                        const std::string& param = "", const std::string& code = "");

}  // namespace muse::server
