// API request -> engine::Request: input selection (prompt text, token ids or chat messages),
// chat-template rendering, image checks, tokenization, sampling/stopping mapping and every range
// check. Runs on the request's thread; a constraint to compile can be left for a compile pool
// (BuildOptions::defer_compile). Errors are absl statuses whose message starts with the proto field
// path ("sampling.top_p: ...", "messages[1].content[0].image: ...").
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "muse/v1/inference.pb.h"
#include "src/common/status.h"
#include "src/engine/request.h"
#include "src/server/audio_input.h"
#include "src/server/served_model.h"
#include "src/vision/image_input.h"

namespace muse::server {

// A decoded, preprocessed image of the request, in placeholder order.
struct PendingImage {
  std::string field;  // "messages[0].content[1].image", "images[0].image_url"
  vision::PreparedImage prepared;
};

// A decoded clip with its features, in placeholder order.
struct PendingAudio {
  std::string field;  // "messages[0].content[1].audio", "images[1].audio_url"
  PreparedAudio prepared;
  int32_t num_tokens = 0;  // the prompt rows it expands to (>= 1)
};

struct BuiltRequest {
  engine::Request request;  // id, priority and deadline are left for the caller
  bool skip_special_tokens = true;
  std::string input_field;  // "prompt", "prompt_token_ids" or "messages"
  // Images in placeholder order. request.prompt_token_ids still holds ONE placeholder token per
  // image; ExpandImagePlaceholders (admission) widens each once the embeddings exist. The range
  // checks already used the expanded length.
  std::vector<PendingImage> images;
  // Audio clips in placeholder order, likewise: one placeholder each until admission expands it.
  std::vector<PendingAudio> audios;
  // Set only with BuildOptions::defer_compile when the grammar cache does not hold the request's
  // constraint yet: request.sampling.grammar is null until CompileResponseFormat(*to_compile).
  std::optional<structured::Constraint> to_compile;
};

// Checks `model` against the served model (empty = the served one). NotFound otherwise.
absl::Status CheckModelName(const std::string& model, const ServedModel& served);

// Renders `messages` with the chat template and tokenizes the result (no extra BOS: templates
// carry their own). A message with image parts reaches the template with list content
// ({"type": "text", "text": ...} / {"type": "image"}), which renders each image as the model's
// placeholder token; audio parts ({"type": "audio"}) likewise. Images are decoded + preprocessed
// into `images` and clips into `audios` (null: only checked to be present, e.g. for Tokenize).
// Errors name the field ("messages[0].content[1].image: ...").
absl::StatusOr<std::vector<int32_t>> TokenizeChat(
    const google::protobuf::RepeatedPtrField<v1::ChatMessage>& messages,
    const google::protobuf::RepeatedPtrField<v1::Tool>& tools, bool add_generation_prompt,
    const ServedModel& served, std::vector<PendingImage>* images = nullptr,
    std::vector<PendingAudio>* audios = nullptr);

// Tool JSON of the request (tools[].parameters_json, a history call's arguments) parsed with its
// key order kept (HF renders the client's order) and its nesting bounded (64 levels). Errors:
// "<field>: is not valid JSON", "<field>: nests deeper than 64 levels".
absl::StatusOr<nlohmann::ordered_json> ParseToolJson(const std::string& text,
                                                     const std::string& field);

struct BuildOptions {
  // Unset stopping.max_tokens: false = 16 (muse.v1's default); true = as many as the context
  // length and the KV pool leave after the prompt (OpenAI chat, as vLLM does).
  bool max_tokens_fill_context = false;
  // true: a response_format the grammar cache does not hold (finished) is not compiled here but
  // left in BuiltRequest::to_compile; every other check still runs.
  bool defer_compile = false;
  // --thinking-token-budget: sampling.thinking_token_budget when the request leaves it unset
  // (requests with a response_format then get none). Unset: no budget.
  std::optional<int> default_thinking_token_budget;
};

absl::StatusOr<BuiltRequest> BuildRequest(const v1::GenerateRequest& req, const ServedModel& served,
                                          const BuildOptions& options = {});

// Checks that `bytes` hold a PNG or JPEG image (signature and header). Field-named errors.
absl::Status CheckImageBytes(const std::string& bytes, const std::string& field);

}  // namespace muse::server
