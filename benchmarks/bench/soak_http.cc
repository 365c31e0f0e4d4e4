#include "benchmarks/bench/soak_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "benchmarks/bench/openai_sse.h"
#include "nlohmann/json.hpp"

namespace muse::bench {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

// grpc::StatusCode values.
constexpr int kOk = 0, kCancelled = 1, kDeadlineExceeded = 4, kUnavailable = 14, kDataLoss = 15;

// Body of a chunked response (the SSE stream); false if the encoding is broken.
bool Dechunk(const std::string& in, std::string* out) {
  size_t at = 0;
  while (true) {
    const size_t eol = in.find("\r\n", at);
    if (eol == std::string::npos) return false;
    uint64_t n = 0;
    if (!absl::SimpleHexAtoi(in.substr(at, eol - at), &n)) return false;
    at = eol + 2;
    if (n == 0) return true;
    if (at + n + 2 > in.size()) return false;
    out->append(in, at, n);
    at += n + 2;
  }
}

}  // namespace

std::string SoakHttpBody(const SoakPlan& p) {
  const v1::GenerateRequest& r = p.request;
  json b;
  if (!r.model().empty()) b["model"] = r.model();
  if (r.messages_size() > 0) {
    json msgs = json::array();
    for (const v1::ChatMessage& m : r.messages()) {
      bool has_image = false;
      for (const auto& c : m.content()) has_image = has_image || !c.image().empty();
      if (!has_image) {
        std::string text;
        for (const auto& c : m.content()) text += c.text();
        msgs.push_back({{"role", m.role()}, {"content", text}});
        continue;
      }
      json parts = json::array();
      for (const auto& c : m.content()) {
        if (!c.image().empty()) {
          parts.push_back(
              {{"type", "image_url"}, {"image_url", {{"url", ImageDataUri(c.image())}}}});
        } else {
          parts.push_back({{"type", "text"}, {"text", c.text()}});
        }
      }
      msgs.push_back({{"role", m.role()}, {"content", parts}});
    }
    b["messages"] = msgs;
  } else {
    b["prompt"] = r.prompt();
  }
  const v1::SamplingParams& s = r.sampling();
  b["temperature"] = s.temperature();
  if (s.has_seed()) b["seed"] = static_cast<int64_t>(s.seed() & 0x7fffffff);
  if (s.has_n()) b["n"] = s.n();
  if (s.has_top_p()) b["top_p"] = s.top_p();
  b["max_tokens"] = r.stopping().max_tokens();
  if (r.stopping().ignore_eos()) b["ignore_eos"] = true;
  if (r.stopping().stop_size() > 0) {
    b["stop"] = std::vector<std::string>(r.stopping().stop().begin(), r.stopping().stop().end());
  }
  b["stream"] = !p.unary;
  return b.dump();
}

void RunSoakHttp(const std::string& host, int port, const SoakPlan& p, SoakOutcome* out) {
  auto finish = [&](int code, const std::string& error) {
    out->code = code;
    out->error = error;
    out->terminal.fetch_add(1);
  };
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host.c_str(), &a.sin_addr);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (fd >= 0) ::close(fd);
    finish(kUnavailable, "cannot connect to the HTTP port");
    return;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const std::string body = SoakHttpBody(p);
  const char* path = p.request.messages_size() > 0 ? "/v1/chat/completions" : "/v1/completions";
  const std::string req =
      absl::StrCat("POST ", path,
                   " HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
                   "Connection: close\r\nContent-Length: ",
                   body.size(), "\r\n\r\n", body);
  const auto start = Clock::now();
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    finish(kUnavailable, "send failed");
    return;
  }
  // The client gives up (closes) at `give_up`: a delayed cancel, or the deadline.
  const bool timed =
      p.fate == Fate::kCancelAfterDelay || p.fate == Fate::kDeadline ||
      (p.unary && (p.fate == Fate::kCancelAfterFirstToken || p.fate == Fate::kCancelMidDecode));
  const auto give_up = start + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(timed ? p.delay_s : 3600.0));
  const int closed_code = p.fate == Fate::kDeadline ? kDeadlineExceeded : kCancelled;
  if (p.fate == Fate::kCancelAtStart) {
    ::close(fd);
    finish(kCancelled, "closed by the client at start");
    return;
  }
  const bool slow = p.fate == Fate::kSlowThenCancel || p.fate == Fate::kSlowThenRead;
  if (slow) {
    std::this_thread::sleep_for(std::chrono::duration<double>(p.delay_s));
    if (p.fate == Fate::kSlowThenCancel) {
      // Whatever the server already sent sits unread in the socket buffer: the client gave up.
      ::close(fd);
      finish(kCancelled, "slow reader closed");
      return;
    }
  }
  std::string raw;
  int status = 0;
  size_t header_end = std::string::npos;
  int64_t events = 0;
  char buf[16384];
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(give_up - Clock::now()).count();
    if (left <= 0) {
      ::close(fd);
      finish(closed_code, "closed by the client (time)");
      return;
    }
    pollfd pf{fd, POLLIN, 0};
    const int64_t wait_ms = std::min<int64_t>(left, 120000);
    if (::poll(&pf, 1, static_cast<int>(wait_ms)) == 0) {
      if (wait_ms == 120000) {  // two minutes of silence: the server hangs
        ::close(fd);
        finish(kDataLoss, "no bytes for 120 s");
        return;
      }
      continue;  // give_up reached (or within a millisecond of it): the loop closes
    }
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      ::close(fd);
      finish(kUnavailable, "recv failed");
      return;
    }
    if (n == 0) break;  // Connection: close -> the response is complete
    raw.append(buf, static_cast<size_t>(n));
    if (header_end == std::string::npos) {
      header_end = raw.find("\r\n\r\n");
      if (header_end != std::string::npos) {
        const size_t sp = raw.find(' ');
        if (sp != std::string::npos) (void)absl::SimpleAtoi(raw.substr(sp + 1, 3), &status);
      }
    }
    if (header_end != std::string::npos && !p.unary && status == 200) {
      // Token events so far (each SSE event is written as one chunk, so "data: {" is never split
      // in a way that matters for counting at these thresholds).
      int64_t e = 0;
      for (size_t at = raw.find("data: {", header_end); at != std::string::npos;
           at = raw.find("data: {", at + 1)) {
        ++e;
      }
      events = e;
      if ((p.fate == Fate::kCancelAfterFirstToken && events >= 1) ||
          (p.fate == Fate::kCancelMidDecode && events >= p.cancel_after_tokens)) {
        ::close(fd);
        finish(kCancelled, "closed by the client after tokens");
        out->tokens = events;
        return;
      }
    }
  }
  ::close(fd);
  if (header_end == std::string::npos) {
    finish(kDataLoss, "connection closed before the response headers");
    return;
  }
  if (status != 200) {
    finish(CodeOfHttpStatus(status), raw.substr(header_end + 4, 300));
    return;
  }
  const std::string head = raw.substr(0, header_end);
  std::string payload = raw.substr(header_end + 4);
  if (absl::StrContains(absl::AsciiStrToLower(head), "transfer-encoding: chunked")) {
    std::string d;
    if (!Dechunk(payload, &d)) {
      finish(kDataLoss, "broken chunked encoding");
      return;
    }
    payload = std::move(d);
  }
  if (!p.unary) {
    // SSE: one [DONE] at the end, a finish_reason for each of the n choices, no error event.
    out->tokens = events;
    // An error after the headers (e.g. the engine's queue turned out full) comes as one error
    // event with the OpenAI error shape; the server counts it under the status's code.
    if (const size_t at = payload.find("data: {\"error\""); at != std::string::npos) {
      const size_t eol = payload.find('\n', at);
      const json e = json::parse(payload.substr(at + 6, eol - at - 6), nullptr, false);
      const std::string type = e.is_discarded() ? "" : e["error"].value("type", "");
      const std::string code = e.is_discarded() || !e["error"]["code"].is_string()
                                   ? ""
                                   : e["error"]["code"].get<std::string>();
      finish(CodeOfOpenAiError(type, code), payload.substr(at, std::min<size_t>(300, eol - at)));
      return;
    }
    out->finished_messages = absl::EndsWith(payload, "data: [DONE]\n\n") ? 1 : 0;
    for (size_t at = payload.find("\"finish_reason\":\""); at != std::string::npos;
         at = payload.find("\"finish_reason\":\"", at + 1)) {
      ++out->samples_finished;
    }
    finish(out->finished_messages == 1 ? kOk : kDataLoss, "");
    return;
  }
  const json j = json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.contains("choices") || !j["choices"].is_array()) {
    finish(kDataLoss, "200 without a JSON completion");
    return;
  }
  out->finished_messages = 1;
  for (const auto& c : j["choices"]) {
    if (c.contains("finish_reason") && c["finish_reason"].is_string()) ++out->samples_finished;
  }
  if (j.contains("usage") && j["usage"].contains("completion_tokens")) {
    out->tokens = j["usage"]["completion_tokens"].get<int64_t>();
  }
  finish(kOk, "");
}

}  // namespace muse::bench
