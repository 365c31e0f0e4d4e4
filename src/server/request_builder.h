// API request -> engine::Request: input selection (prompt text, token ids or chat messages),
// chat-template rendering, image checks, tokenization, sampling/stopping mapping and every range
// check. Runs on gRPC threads. Errors are absl statuses whose message starts with the proto field
// path ("sampling.top_p: ...", "messages[1].content[0].image: ...").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "muse/v1/inference.pb.h"
#include "src/common/status.h"
#include "src/engine/request.h"
#include "src/server/served_model.h"

namespace muse::server {

struct BuiltRequest {
  engine::Request request;     // id, priority and deadline are left for the caller
  bool skip_special_tokens = true;
  std::string input_field;     // "prompt", "prompt_token_ids" or "messages"
};

// Checks `model` against the served model (empty = the served one). NotFound otherwise.
absl::Status CheckModelName(const std::string& model, const ServedModel& served);

// Renders `messages` with the chat template and tokenizes the result (no extra BOS: templates
// carry their own). `field` prefixes errors ("messages").
absl::StatusOr<std::vector<int32_t>> TokenizeChat(
    const google::protobuf::RepeatedPtrField<v1::ChatMessage>& messages,
    const google::protobuf::RepeatedPtrField<v1::Tool>& tools, bool add_generation_prompt,
    const ServedModel& served);

absl::StatusOr<BuiltRequest> BuildRequest(const v1::GenerateRequest& req, const ServedModel& served);

// Checks that `bytes` hold a PNG or JPEG image (signature and header). Field-named errors.
absl::Status CheckImageBytes(const std::string& bytes, const std::string& field);

}  // namespace muse::server
