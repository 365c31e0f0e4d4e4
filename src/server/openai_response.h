// The HTTP face's response side: the core's per-sample deltas (OutputAccumulator) -> OpenAI's
// JSON shapes. Chat: chat.completion / chat.completion.chunk (logprobs.content entries with
// token, logprob, bytes, top_logprobs). Completions: text_completion (legacy logprobs: tokens,
// token_logprobs, top_logprobs, text_offset). Usage: prompt_tokens, completion_tokens,
// total_tokens, prompt_tokens_details.cached_tokens. Plain C++ (nlohmann-json); one owner.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "muse/v1/inference.pb.h"
#include "src/chat/chat_output_parser.h"
#include "src/engine/request.h"
#include "src/server/openai_request.h"
#include "src/tokenizer/tokenizer.h"

namespace muse::server {

class OpenAiResponder {
 public:
  // `id` e.g. "chatcmpl-req-7"; `model` the served model id; `created` Unix seconds.
  OpenAiResponder(const OpenAiRequest& request, const tokenizer::Tokenizer& tokenizer,
                  std::string id, std::string model, int64_t created);

  // Chat: each choice's text goes through the parser `make(choice index)` returns (reasoning,
  // content and tool calls, src/chat). Streamed: `reasoning_content`, `content` and `tool_calls`
  // deltas (a call's first delta: index, id, type, function.name, arguments ""; then raw
  // argument text), consecutive deltas of one kind in one chunk; a choice that made a call and
  // stopped finishes with "tool_calls". Non-streaming: message.tool_calls (content null when
  // there is no text) and reasoning_content. Call before the first Append/Collect.
  using ParserFactory = std::function<std::unique_ptr<chat::ChatOutputParser>(int choice)>;
  void SetChatParsers(ParserFactory make) { make_parser_ = std::move(make); }

  // Streaming: appends one `data: {chunk}\n\n` event per choice with news in `deltas` (samples
  // of prompt `prompt_index`), in choice order. A chat choice's first chunk carries the role;
  // finish_reason is null until the choice's last chunk.
  void AppendChunks(int prompt_index, const std::map<int, v1::SampleDelta>& deltas,
                    std::string* sse);
  // Streaming, include_usage: the final chunk (choices: [], usage).
  void AppendUsageChunk(const engine::Usage& usage, std::string* sse) const;

  // Non-streaming: keeps the deltas; Body() is the whole response.
  void Collect(int prompt_index, const std::map<int, v1::SampleDelta>& deltas);
  std::string Body(const engine::Usage& usage) const;

 private:
  // NOLINTNEXTLINE(bugprone-exception-escape): nlohmann::json's destructor may allocate.
  struct Choice {
    bool role_sent = false;
    std::string text;           // non-streaming: the whole text
    int64_t text_offset = 0;    // completions logprobs: offset of the next token's text
    nlohmann::json logprobs;    // non-streaming: entries so far
    std::string finish_reason;  // set once finished
    std::unique_ptr<chat::ChatOutputParser> parser;  // chat with SetChatParsers
  };
  chat::ChatOutputParser* Parser(int index, Choice& c);
  // One streamed chat step through the parser: its chunks' deltas, in order.
  std::vector<nlohmann::json> ParsedDeltas(Choice& c, const std::string& text, bool finish);
  int ChoiceIndex(int prompt_index, int sample) const { return prompt_index * request_.n + sample; }
  // The logprob entries of `d` in this endpoint's shape (chat: list; completions: the legacy
  // parallel lists); updates the choice's text offset.
  nlohmann::json Logprobs(const v1::SampleDelta& d, Choice& c) const;
  std::string TokenText(int32_t id) const;
  nlohmann::json Usage(const engine::Usage& u) const;

  const OpenAiRequest& request_;
  const tokenizer::Tokenizer& tokenizer_;
  const std::string id_, model_;
  const int64_t created_;
  std::map<int, Choice> choices_;  // by choice index
  ParserFactory make_parser_;
};

}  // namespace muse::server
