// The OpenAI streaming API as a benchmark client sees it, without any networking: SSE framing
// (`data: ...` lines, blank line = end of event, `:` comments), one chunk's JSON -> what the
// metrics need (text arrived, finish reasons, usage, an error event), the chunk -> RequestRecord
// mapping (TTFT / ITL as vLLM's benchmark_serving: one timestamp per content-bearing event), HTTP
// statuses and OpenAI error types -> the gRPC code names the server counts in muse_requests_total,
// and the request body for a BenchRequest. Used by the openai-chat / openai-completions backends.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "benchmarks/bench/request_record.h"
#include "benchmarks/bench/workload.h"

namespace muse::bench {

// Incremental SSE parser: feed body bytes as they arrive (any split), get each complete event's
// data (several `data:` lines joined by '\n'). CRLF, LF and CR line ends are accepted.
class SseParser {
 public:
  void Feed(std::string_view bytes, std::vector<std::string>* events);

 private:
  void Line(std::string_view line, std::vector<std::string>* events);
  std::string line_;
  std::string data_;
  bool have_data_ = false;
  bool last_cr_ = false;
};

// One `data:` payload of a chat.completion.chunk / text_completion stream.
struct OpenAiEvent {
  bool done = false;          // data: [DONE]
  bool valid = false;         // parsed as a JSON object (or [DONE])
  int64_t text_bytes = 0;     // delta.content (chat) / text (completions), all choices
  int finish_reasons = 0;     // choices whose finish_reason is a string
  bool has_usage = false;     // "usage" is an object (the include_usage chunk)
  int64_t prompt_tokens = 0;  // usage.*
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;  // usage.prompt_tokens_details.cached_tokens
  bool error = false;         // {"error": {...}} after a 200
  int error_code = 0;         // grpc::StatusCode value its type / code names
  std::string error_message;
};
OpenAiEvent ParseOpenAiEvent(std::string_view data);

// What a stream has shown so far; Apply() fills the record's chunk timeline as events arrive.
struct OpenAiStreamState {
  int64_t chunks = 0;  // content-bearing events
  bool done = false;
  int finish_reasons = 0;
  bool have_usage = false;
  int error_code = 0;
  std::string error;
  // Applies one event that arrived at `t` (seconds from the benchmark start): a content-bearing
  // event is a chunk (TTFT for the first, ITL to the previous); usage fills the token counts.
  // Returns the chunk's token count for progress (1 per content event, 0 otherwise).
  int Apply(const OpenAiEvent& e, double t, RequestRecord* record);
};

// Fills the record's status, output tokens and E2E once the response ended: HTTP status != 200 ->
// its code with `body` as the message; an error event -> its code; no [DONE] -> DATA_LOSS.
// Output tokens = usage.completion_tokens (else the number of chunks); the chunk token counts are
// 1 each with the rest of usage.completion_tokens on the last one (SSE chunks carry text, not ids).
void FinishOpenAiStream(const OpenAiStreamState& state, int http_status, const std::string& body,
                        RequestRecord* record);

// grpc::StatusCode value for an HTTP status, as the server's muse_requests_total names it.
int CodeOfHttpStatus(int status);
// grpc::StatusCode value for an OpenAI error (type, code) sent as an SSE event after a 200.
int CodeOfOpenAiError(std::string_view type, std::string_view code);

// data:image/...;base64 URI for PNG or JPEG bytes.
std::string ImageDataUri(const std::string& bytes);

// POST body for `b`: chat (messages; image as a data: URI part) or completions (prompt as token
// ids, or text); stream with include_usage, max_tokens, ignore_eos, temperature, priority, and
// a strict json_schema response_format when `json_schema` (the schema's text) is not empty.
// Chat needs b.prompt_text (token-id prompts are detokenized first, see the HTTP backend).
std::string OpenAiRequestBody(const BenchRequest& b, bool chat, const std::string& model,
                              float temperature, const std::string& json_schema = "");

}  // namespace muse::bench
