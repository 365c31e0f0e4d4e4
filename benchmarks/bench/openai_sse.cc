#include "benchmarks/bench/openai_sse.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace muse::bench {
namespace {

using nlohmann::json;

// grpc::StatusCode values (this library has no gRPC).
constexpr int kOk = 0, kUnknown = 2, kInvalidArgument = 3, kDeadlineExceeded = 4, kNotFound = 5,
              kPermissionDenied = 7, kResourceExhausted = 8, kInternal = 13, kUnavailable = 14,
              kDataLoss = 15, kUnauthenticated = 16;

int64_t Int(const json& o, const char* key) {
  const auto it = o.find(key);
  return it != o.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

std::string Str(const json& o, const char* key) {  // "" when absent or not a string
  const auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

void SseParser::Feed(std::string_view bytes, std::vector<std::string>* events) {
  for (const char c : bytes) {
    if (c == '\n' && last_cr_) {  // the LF of a CRLF: the line already ended at the CR
      last_cr_ = false;
      continue;
    }
    last_cr_ = c == '\r';
    if (c == '\r' || c == '\n') {
      Line(line_, events);
      line_.clear();
    } else {
      line_.push_back(c);
    }
  }
}

void SseParser::Line(std::string_view line, std::vector<std::string>* events) {
  if (line.empty()) {  // end of event
    if (have_data_) events->push_back(std::move(data_));
    data_.clear();
    have_data_ = false;
    return;
  }
  if (line.front() == ':') return;  // comment (the server's `: ping`)
  const size_t colon = line.find(':');
  const std::string_view field = line.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (field != "data") return;  // event:, id:, retry: mean nothing to the OpenAI API
  if (have_data_) data_.push_back('\n');
  data_.append(value);
  have_data_ = true;
}

OpenAiEvent ParseOpenAiEvent(std::string_view data) {
  OpenAiEvent e;
  if (data == "[DONE]") {
    e.done = e.valid = true;
    return e;
  }
  const json j = json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return e;
  e.valid = true;
  if (const auto err = j.find("error"); err != j.end() && err->is_object()) {
    e.error = true;
    e.error_code = CodeOfOpenAiError(Str(*err, "type"), Str(*err, "code"));
    e.error_message = Str(*err, "message");
    return e;
  }
  if (const auto ch = j.find("choices"); ch != j.end() && ch->is_array()) {
    for (const json& c : *ch) {
      if (!c.is_object()) continue;
      const json* text = nullptr;
      if (const auto d = c.find("delta"); d != c.end() && d->is_object()) {
        if (const auto t = d->find("content"); t != d->end()) text = &*t;
      } else if (const auto t = c.find("text"); t != c.end()) {
        text = &*t;
      }
      if (text && text->is_string()) {
        e.text_bytes += static_cast<int64_t>(text->get_ref<const std::string&>().size());
      }
      if (const auto f = c.find("finish_reason"); f != c.end() && f->is_string()) {
        ++e.finish_reasons;
      }
    }
  }
  if (const auto u = j.find("usage"); u != j.end() && u->is_object()) {
    e.has_usage = true;
    e.prompt_tokens = Int(*u, "prompt_tokens");
    e.completion_tokens = Int(*u, "completion_tokens");
    if (const auto d = u->find("prompt_tokens_details"); d != u->end() && d->is_object()) {
      e.cached_tokens = Int(*d, "cached_tokens");
    }
  }
  return e;
}

int OpenAiStreamState::Apply(const OpenAiEvent& e, double t, RequestRecord* r) {
  if (e.done) {
    done = true;
    return 0;
  }
  if (!e.valid) {
    if (error_code == 0) {
      error_code = kDataLoss;
      error = "SSE event that is not JSON";
    }
    return 0;
  }
  if (e.error) {
    error_code = e.error_code;
    error = e.error_message;
    return 0;
  }
  finish_reasons += e.finish_reasons;
  if (e.has_usage) {
    have_usage = true;
    r->prompt_tokens = e.prompt_tokens;
    r->cached_tokens = e.cached_tokens;
    r->output_tokens = e.completion_tokens;
  }
  if (e.text_bytes == 0) return 0;
  RecordChunk(r, t, 1);
  ++chunks;
  return 1;
}

void FinishOpenAiStream(const OpenAiStreamState& s, int http_status, const std::string& body,
                        RequestRecord* r) {
  r->e2e_s = r->chunk_s.empty() ? 0.0 : r->chunk_s.back() - r->start_s;
  if (!s.have_usage) r->output_tokens = s.chunks;
  if (s.have_usage && !r->chunk_tokens.empty()) {
    const int64_t rest = r->output_tokens - s.chunks;
    if (rest > 0) r->chunk_tokens.back() += static_cast<int32_t>(rest);
  }
  if (http_status != 200) {
    r->status_code = CodeOfHttpStatus(http_status);
    r->error = absl::StrCat("HTTP ", http_status, ": ", body.substr(0, 300));
  } else if (s.error_code != 0) {
    r->status_code = s.error_code;
    r->error = s.error;
  } else if (!s.done) {
    r->status_code = kDataLoss;
    r->error = "stream ended without data: [DONE]";
  } else {
    r->status_code = kOk;
  }
}

int CodeOfHttpStatus(int status) {
  switch (status) {
    case 200:
      return kOk;
    case 400:
    case 413:
    case 431:
      return kInvalidArgument;
    case 401:
      return kUnauthenticated;
    case 403:
      return kPermissionDenied;
    case 404:
      return kNotFound;
    case 429:
      return kResourceExhausted;
    case 503:
      return kUnavailable;
    case 504:
      return kDeadlineExceeded;
    default:
      return status >= 500 ? kInternal : kUnknown;
  }
}

int CodeOfOpenAiError(std::string_view type, std::string_view code) {
  if (code == "service_unavailable") return kUnavailable;
  if (code == "timeout") return kDeadlineExceeded;
  if (type == "rate_limit_error") return kResourceExhausted;
  if (type == "invalid_request_error") return kInvalidArgument;
  return kInternal;
}

std::string ImageDataUri(const std::string& bytes) {
  const bool png = absl::StartsWith(bytes, "\x89PNG");
  return absl::StrCat("data:image/", png ? "png" : "jpeg", ";base64,", absl::Base64Escape(bytes));
}

std::string OpenAiRequestBody(const BenchRequest& b, bool chat, const std::string& model,
                              float temperature, const std::string& json_schema) {
  json j;
  if (!model.empty()) j["model"] = model;
  if (chat || !b.image_png.empty()) {
    json content = b.prompt_text;
    if (!b.image_png.empty()) {
      content =
          json::array({{{"type", "image_url"}, {"image_url", {{"url", ImageDataUri(b.image_png)}}}},
                       {{"type", "text"}, {"text", b.prompt_text}}});
    }
    j["messages"] = json::array({{{"role", "user"}, {"content", content}}});
  } else if (!b.prompt_ids.empty()) {
    j["prompt"] = b.prompt_ids;
  } else {
    j["prompt"] = b.prompt_text;
  }
  j["temperature"] = temperature;
  j["max_tokens"] = b.max_tokens;
  if (b.ignore_eos) j["ignore_eos"] = true;
  if (!b.priority.empty()) j["priority"] = b.priority;
  if (!json_schema.empty()) {
    j["response_format"] = {
        {"type", "json_schema"},
        {"json_schema",
         {{"name", "bench"}, {"strict", true}, {"schema", json::parse(json_schema)}}}};
  }
  j["stream"] = true;
  j["stream_options"] = {{"include_usage", true}};
  return j.dump();
}

}  // namespace muse::bench
