#include "src/server/openai_response.h"

#include <array>
#include <string_view>

#include "absl/strings/str_cat.h"

namespace muse::server {
namespace {

using json = nlohmann::json;

// Never throws on invalid UTF-8 (a token may be part of a character): U+FFFD instead.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

const char* FinishName(v1::FinishReason r) {
  switch (r) {
    case v1::FINISH_REASON_STOP:
      return "stop";
    case v1::FINISH_REASON_LENGTH:
      return "length";
    case v1::FINISH_REASON_ABORT:
      return "abort";
    default:
      return nullptr;
  }
}

json Bytes(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

}  // namespace

OpenAiResponder::OpenAiResponder(const OpenAiRequest& request,
                                 const tokenizer::Tokenizer& tokenizer, std::string id,
                                 std::string model, int64_t created)
    : request_(request),
      tokenizer_(tokenizer),
      id_(std::move(id)),
      model_(std::move(model)),
      created_(created) {}

std::string OpenAiResponder::TokenText(int32_t id) const {
  const int32_t ids[1] = {id};
  return tokenizer_.Decode(ids, /*skip_special_tokens=*/false).value_or("");
}

json OpenAiResponder::Logprobs(const v1::SampleDelta& d, Choice& c) const {
  if (request_.endpoint == OpenAiEndpoint::kChat) {
    json content = json::array();
    for (const v1::TokenLogprob& lp : d.logprobs()) {
      const std::string tok = TokenText(lp.token_id());
      json top = json::array();
      for (const v1::TopLogprob& t : lp.top()) {
        const std::string tt = TokenText(t.token_id());
        top.push_back({{"token", tt}, {"logprob", t.logprob()}, {"bytes", Bytes(tt)}});
      }
      content.push_back({{"token", tok},
                         {"logprob", lp.logprob()},
                         {"bytes", Bytes(tok)},
                         {"top_logprobs", std::move(top)}});
    }
    return {{"content", std::move(content)}};
  }
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(),
       offsets = json::array();
  for (const v1::TokenLogprob& lp : d.logprobs()) {
    const std::string tok = TokenText(lp.token_id());
    tokens.push_back(tok);
    token_logprobs.push_back(lp.logprob());
    json alts = json::object();
    alts[tok] = lp.logprob();  // the sampled token is always listed (as vLLM does)
    for (const v1::TopLogprob& t : lp.top()) alts[TokenText(t.token_id())] = t.logprob();
    top.push_back(std::move(alts));
    offsets.push_back(c.text_offset);
    c.text_offset += static_cast<int64_t>(tok.size());
  }
  return {{"tokens", std::move(tokens)},
          {"token_logprobs", std::move(token_logprobs)},
          {"top_logprobs", std::move(top)},
          {"text_offset", std::move(offsets)}};
}

json OpenAiResponder::Usage(const engine::Usage& u) const {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}},
          {"completion_tokens_details", {{"reasoning_tokens", u.reasoning_tokens}}}};
}

chat::ChatOutputParser* OpenAiResponder::Parser(int index, Choice& c) {
  if (!make_parser_ || request_.endpoint != OpenAiEndpoint::kChat) return nullptr;
  if (!c.parser) c.parser = make_parser_(index);
  return c.parser.get();
}

std::vector<json> OpenAiResponder::ParsedDeltas(Choice& c, const std::string& text, bool finish) {
  chat::ChatOutputDelta d = c.parser->Feed(text);
  if (finish) {
    chat::ChatOutputDelta f = c.parser->Finish();
    d.reasoning += f.reasoning;  // reasoning always precedes content: no order is lost
    for (chat::ChatDelta& x : f.deltas) d.deltas.push_back(std::move(x));
  }
  std::vector<json> out;
  if (!d.reasoning.empty()) out.push_back({{"reasoning_content", d.reasoning}});
  for (const chat::ChatDelta& x : d.deltas) {
    if (!x.tool_call) {
      if (x.content.empty()) continue;
      if (!out.empty() && out.back().contains("content")) {
        out.back()["content"] = out.back()["content"].get<std::string>() + x.content;
      } else {
        out.push_back({{"content", x.content}});
      }
      continue;
    }
    const chat::ToolCallDelta& t = *x.tool_call;
    const bool first = !t.id.empty() || !t.name.empty();
    // A call's first delta goes out alone with empty arguments (OpenAI's shape; clients key on
    // it): its argument text starts the next chunk.
    if (out.empty() || !out.back().contains("tool_calls") ||
        (!first && out.back()["tool_calls"].back().contains("id"))) {
      out.push_back({{"tool_calls", json::array()}});
    }
    json& calls = out.back()["tool_calls"];
    if (!first && !calls.empty() && calls.back()["index"] == t.index) {
      json& args = calls.back()["function"]["arguments"];
      args = args.get<std::string>() + t.arguments;
      continue;
    }
    json call = {{"index", t.index}};
    if (first) {
      call["id"] = t.id;
      call["type"] = "function";
      call["function"] = {{"name", t.name}, {"arguments", t.arguments}};
    } else {
      call["function"] = {{"arguments", t.arguments}};
    }
    calls.push_back(std::move(call));
  }
  return out;
}

void OpenAiResponder::AppendChunks(int prompt_index, const std::map<int, v1::SampleDelta>& deltas,
                                   std::string* sse) {
  const bool chat = request_.endpoint == OpenAiEndpoint::kChat;
  for (const auto& [sample, d] : deltas) {
    const int index = ChoiceIndex(prompt_index, sample);
    Choice& c = choices_[index];
    const char* finish = FinishName(d.finish_reason());
    if (chat::ChatOutputParser* parser = Parser(index, c)) {
      std::vector<json> parts = ParsedDeltas(c, d.text(), finish != nullptr);
      if (finish != nullptr && std::string_view(finish) == "stop" && parser->saw_tool_call()) {
        finish = "tool_calls";
      }
      json lp = request_.logprobs && d.logprobs_size() > 0 ? Logprobs(d, c) : json(nullptr);
      if (!c.role_sent) {
        if (parts.empty()) parts.push_back({{"content", ""}});
        parts.front()["role"] = "assistant";
        c.role_sent = true;
      }
      if (parts.empty() && (finish != nullptr || !lp.is_null())) parts.push_back(json::object());
      for (size_t k = 0; k < parts.size(); ++k) {
        const bool last = k + 1 == parts.size();
        json choice = {{"index", index},
                       {"delta", std::move(parts[k])},
                       {"logprobs", last ? lp : json(nullptr)},
                       {"finish_reason", last && finish != nullptr ? json(finish) : json(nullptr)}};
        json chunk = {{"id", id_},
                      {"object", "chat.completion.chunk"},
                      {"created", created_},
                      {"model", model_},
                      {"choices", json::array({std::move(choice)})}};
        if (request_.include_usage) chunk["usage"] = nullptr;
        absl::StrAppend(sse, "data: ", Dump(chunk), "\n\n");
      }
      continue;
    }
    json choice = {{"index", index}};
    if (chat) {
      json delta = json::object();
      if (!c.role_sent) {
        delta["role"] = "assistant";
        c.role_sent = true;
      }
      if (!d.text().empty() || delta.contains("role")) delta["content"] = d.text();
      choice["delta"] = std::move(delta);
    } else {
      choice["text"] = d.text();
    }
    choice["logprobs"] =
        request_.logprobs && d.logprobs_size() > 0 ? Logprobs(d, c) : json(nullptr);
    choice["finish_reason"] = finish != nullptr ? json(finish) : json(nullptr);
    json chunk = {{"id", id_},
                  {"object", chat ? "chat.completion.chunk" : "text_completion"},
                  {"created", created_},
                  {"model", model_},
                  {"choices", json::array({std::move(choice)})}};
    if (request_.include_usage) chunk["usage"] = nullptr;
    absl::StrAppend(sse, "data: ", Dump(chunk), "\n\n");
  }
}

void OpenAiResponder::AppendUsageChunk(const engine::Usage& usage, std::string* sse) const {
  const bool chat = request_.endpoint == OpenAiEndpoint::kChat;
  json chunk = {{"id", id_},
                {"object", chat ? "chat.completion.chunk" : "text_completion"},
                {"created", created_},
                {"model", model_},
                {"choices", json::array()},
                {"usage", Usage(usage)}};
  absl::StrAppend(sse, "data: ", Dump(chunk), "\n\n");
}

void OpenAiResponder::Collect(int prompt_index, const std::map<int, v1::SampleDelta>& deltas) {
  for (const auto& [sample, d] : deltas) {
    Choice& c = choices_[ChoiceIndex(prompt_index, sample)];
    c.text += d.text();
    if (request_.logprobs && d.logprobs_size() > 0) {
      json lp = Logprobs(d, c);
      if (c.logprobs.is_null()) {
        c.logprobs = std::move(lp);
      } else {
        for (auto& [key, list] : lp.items()) {
          for (auto& e : list) c.logprobs[key].push_back(std::move(e));
        }
      }
    }
    if (const char* f = FinishName(d.finish_reason())) c.finish_reason = f;
  }
}

std::string OpenAiResponder::Body(const engine::Usage& usage) const {
  const bool chat = request_.endpoint == OpenAiEndpoint::kChat;
  json choices = json::array();
  for (const auto& [index, c] : choices_) {
    json choice = {{"index", index}};
    std::string finish = c.finish_reason;
    if (chat && make_parser_) {
      std::unique_ptr<chat::ChatOutputParser> parser = make_parser_(index);
      const chat::ChatOutput out = parser->Parse(c.text);
      json message = {{"role", "assistant"},
                      {"content", out.parsed.content.empty() && !out.parsed.calls.empty()
                                      ? json(nullptr)
                                      : json(out.parsed.content)},
                      {"refusal", nullptr}};
      if (!out.reasoning.empty()) message["reasoning_content"] = out.reasoning;
      if (!out.parsed.calls.empty()) {
        json calls = json::array();
        for (const chat::ToolCall& call : out.parsed.calls) {
          calls.push_back({{"id", call.id},
                           {"type", "function"},
                           {"function", {{"name", call.name}, {"arguments", call.arguments}}}});
        }
        message["tool_calls"] = std::move(calls);
      }
      if (finish == "stop" && parser->saw_tool_call()) finish = "tool_calls";
      choice["message"] = std::move(message);
    } else if (chat) {
      choice["message"] = {{"role", "assistant"}, {"content", c.text}, {"refusal", nullptr}};
    } else {
      choice["text"] = c.text;
    }
    json lp = c.logprobs;
    if (request_.logprobs && lp.is_null()) {  // logprobs asked, no tokens generated
      lp = chat ? json{{"content", json::array()}}
                : json{{"tokens", json::array()},
                       {"token_logprobs", json::array()},
                       {"top_logprobs", json::array()},
                       {"text_offset", json::array()}};
    }
    choice["logprobs"] = request_.logprobs ? std::move(lp) : json(nullptr);
    choice["finish_reason"] = finish.empty() ? json(nullptr) : json(finish);
    choices.push_back(std::move(choice));
  }
  json body = {{"id", id_},
               {"object", chat ? "chat.completion" : "text_completion"},
               {"created", created_},
               {"model", model_},
               {"choices", std::move(choices)},
               {"usage", Usage(usage)}};
  return Dump(body);
}

}  // namespace muse::server
