// libFuzzer target: the HTTP face's input side. The input is the raw bytes of an HTTP/1.1
// request; it goes through Boost.Beast's request parser with the server's limits (16 KiB of
// headers, a body limit), and a parsed request is routed as the server routes it: the body of
// /v1/chat/completions and /v1/completions through ParseOpenAiRequest, /tokenize and /detokenize
// through theirs, and every error through RenameCoreError + ToHttpError.
//
// Invariants: nothing crashes, leaks or hangs; every refusal is a 4xx whose body is valid JSON of
// OpenAI's error shape ({"error": {message, type, param (string or null), code}}); an accepted
// chat request has messages, an accepted completions request 1..128 prompts.
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "src/server/openai_request.h"

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using muse::server::OpenAiEndpoint;

void Check(bool ok, const char* what, const std::string& detail = "") {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s %s\n", what, detail.c_str());
    std::abort();
  }
}

void CheckError(const absl::Status& st) {
  const muse::server::HttpError e = muse::server::ToHttpError(st);
  Check(e.status >= 400 && e.status < 500, "client input gave a non-4xx", st.ToString());
  auto j = nlohmann::json::parse(e.body, nullptr, false);
  Check(!j.is_discarded() && j.contains("error"), "error body is not OpenAI's shape", e.body);
  const auto& err = j["error"];
  Check(err["message"].is_string() && err["type"].is_string(), "message/type", e.body);
  Check(err["param"].is_string() || err["param"].is_null(), "param", e.body);
  Check(err.contains("code"), "code", e.body);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  http::request_parser<http::string_body> parser;
  parser.header_limit(16 << 10);
  parser.body_limit(1 << 20);
  parser.eager(true);
  beast::error_code ec;
  size_t used = 0;
  while (!ec && !parser.is_done() && used < size) {
    used += parser.put(boost::asio::buffer(data + used, size - used), ec);
    if (ec == http::error::need_more) break;
  }
  if (!parser.is_done()) {
    if (!ec && parser.got_some()) parser.put_eof(ec);  // as async_read does at end of stream
    if (!parser.is_done()) return 0;                   // the server answers 400/413/431 and closes
  }
  const auto& req = parser.get();
  std::string target(req.target());
  target = target.substr(0, target.find('?'));
  const std::string& body = req.body();
  if (target == "/v1/chat/completions" || target == "/v1/completions") {
    const OpenAiEndpoint ep =
        target == "/v1/chat/completions" ? OpenAiEndpoint::kChat : OpenAiEndpoint::kCompletions;
    auto r = muse::server::ParseOpenAiRequest(ep, body);
    if (!r.ok()) {
      Check(r.status().code() == absl::StatusCode::kInvalidArgument, "not InvalidArgument",
            r.status().ToString());
      CheckError(r.status());
      return 0;
    }
    Check(!r->prompts.empty() && r->prompts.size() <= 128, "prompt count");
    if (ep == OpenAiEndpoint::kChat) Check(r->prompts[0].messages_size() > 0, "no messages");
    // Core errors naming proto fields come back renamed and still well-formed.
    for (const char* m : {"sampling.top_p: bad", "stopping.max_tokens: bad", "input: bad",
                          "prompt_token_ids[3]: bad", "messages[0].content[1].image_url: bad",
                          "images[0].image: 9 bytes exceeds the limit of 1 bytes"}) {
      CheckError(muse::server::RenameCoreError(absl::InvalidArgumentError(m), *r,
                                               static_cast<int>(r->prompts.size()) - 1));
    }
  } else if (target == "/tokenize") {
    auto t = muse::server::ParseTokenizeRequest(body);
    if (!t.ok()) CheckError(t.status());
  } else if (target == "/detokenize") {
    std::string model;
    auto ids = muse::server::ParseDetokenizeRequest(body, &model);
    if (!ids.ok()) CheckError(ids.status());
  }
  return 0;
}
