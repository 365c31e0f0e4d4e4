// The OpenAI-compatible HTTP backends (openai-chat, openai-completions): one Beast coroutine per
// request on an io_context run by `connections` threads, HTTP/1.1 keep-alive connections reused
// from an idle pool (one connection per request in flight, as vLLM's aiohttp client), the SSE body
// fed to SseParser as it arrives and each event timestamped on arrival (openai_sse.h).
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmarks/bench/backend.h"
#include "benchmarks/bench/load_runner.h"
#include "benchmarks/bench/openai_sse.h"
#include "nlohmann/json.hpp"

namespace muse::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
constexpr int kDeadlineExceeded = 4, kUnavailable = 14;

class OpenAiBackend final : public Backend {
 public:
  OpenAiBackend(const RunConfig& config, bool chat)
      : config_(config), chat_(chat), work_(asio::make_work_guard(io_)) {}

  ~OpenAiBackend() override {
    work_.reset();
    io_.stop();
    for (std::thread& t : threads_) t.join();
  }

  absl::Status Connect() override {
    if (config_.http_port <= 0) {
      return absl::InvalidArgumentError("the openai backends need --http-port");
    }
    boost::system::error_code ec;
    const std::string host = config_.http_host == "localhost" ? "127.0.0.1" : config_.http_host;
    const asio::ip::address addr = asio::ip::make_address(host, ec);
    if (ec) return absl::InvalidArgumentError(absl::StrCat("HTTP host '", host, "': not an IP"));
    endpoint_ = tcp::endpoint(addr, static_cast<uint16_t>(config_.http_port));
    tcp::socket probe(io_);
    if (probe.connect(endpoint_, ec); ec) {
      return absl::UnavailableError(
          absl::StrCat("cannot connect to ", host, ":", config_.http_port, ": ", ec.message()));
    }
    for (int i = 0; i < std::max(1, config_.connections); ++i) {
      threads_.emplace_back([this] { io_.run(); });
    }
    return absl::OkStatus();
  }

  // Chat needs text: a token-id prompt (random workload) is detokenized by the server's
  // /detokenize first (the chat template then adds its own tokens, as in vLLM's random chat runs).
  absl::Status Prepare(BenchRequest* b) override {
    if (!chat_ || !b->prompt_text.empty() || b->prompt_ids.empty()) return absl::OkStatus();
    beast::tcp_stream s(io_);
    boost::system::error_code ec;
    s.expires_after(std::chrono::seconds(30));
    s.socket().connect(endpoint_, ec);
    http::request<http::string_body> req{http::verb::post, "/detokenize", 11};
    req.set(http::field::host, config_.http_host);
    req.set(http::field::content_type, "application/json");
    if (!config_.api_key.empty()) req.set(http::field::authorization, "Bearer " + config_.api_key);
    req.body() = nlohmann::json{{"tokens", b->prompt_ids}}.dump();
    req.prepare_payload();
    http::response<http::string_body> resp;
    beast::flat_buffer buf;
    if (!ec) http::write(s, req, ec);
    if (!ec) http::read(s, buf, resp, ec);
    if (ec) return absl::UnavailableError(absl::StrCat("/detokenize: ", ec.message()));
    const auto j = nlohmann::json::parse(resp.body(), nullptr, false);
    if (resp.result_int() != 200 || !j.is_object() || !j.contains("prompt") ||
        !j["prompt"].is_string()) {
      return absl::InternalError(
          absl::StrCat("/detokenize: HTTP ", resp.result_int(), " ", resp.body().substr(0, 200)));
    }
    b->prompt_text = j["prompt"].get<std::string>();
    b->prompt_ids.clear();
    return absl::OkStatus();
  }

  void Start(BenchRequest b, int64_t index, CallSlot slot) override {
    (void)index;
    const bool chat = chat_ || !b.image_png.empty();  // images only go to chat (as over gRPC)
    std::string body =
        OpenAiRequestBody(b, chat, config_.model, config_.temperature, config_.json_schema);
    asio::co_spawn(io_,
                   Exchange(chat ? "/v1/chat/completions" : "/v1/completions", std::move(body),
                            std::move(slot)),
                   asio::detached);
  }

 private:
  std::unique_ptr<beast::tcp_stream> TakeIdle() {
    std::lock_guard lock(mu_);
    if (idle_.empty()) return nullptr;
    auto s = std::move(idle_.back());
    idle_.pop_back();
    return s;
  }
  void PutIdle(std::unique_ptr<beast::tcp_stream> s) {
    std::lock_guard lock(mu_);
    idle_.push_back(std::move(s));
  }

  asio::awaitable<void> Exchange(std::string path, std::string body, CallSlot slot) {
    RequestRecord* r = slot.record;
    OpenAiStreamState state;
    int status = 0;
    std::string error_body, fail;
    bool timed_out = false, reusable = false;
    const bool timed = config_.request_timeout_s > 0;
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(config_.request_timeout_s));
    std::unique_ptr<beast::tcp_stream> s = TakeIdle();
    bool reused = s != nullptr;
    auto arm = [&] {
      if (timed) {
        s->expires_at(deadline);
      } else {
        s->expires_never();
      }
    };
    auto failed = [&](const char* what, const boost::system::error_code& ec) {
      timed_out = ec == beast::error::timeout;
      fail = absl::StrCat(what, ": ", ec.message());
    };
    http::request<http::string_body> req{http::verb::post, path, 11};
    req.set(http::field::host, config_.http_host);
    req.set(http::field::content_type, "application/json");
    if (!config_.api_key.empty()) req.set(http::field::authorization, "Bearer " + config_.api_key);
    req.keep_alive(true);
    req.body() = std::move(body);
    req.prepare_payload();
    while (true) {
      if (!s) {
        s = std::make_unique<beast::tcp_stream>(io_);
        arm();
        auto [ec] = co_await s->async_connect(endpoint_, kNoThrow);
        if (ec) {
          failed("connect", ec);
          break;
        }
        s->socket().set_option(tcp::no_delay(true), ec);  // best effort
      }
      arm();
      auto [wec, wn] = co_await http::async_write(*s, req, kNoThrow);
      beast::flat_buffer buf;
      http::response_parser<http::buffer_body> p;
      p.body_limit(boost::none);
      boost::system::error_code ec = wec;
      if (!ec) std::tie(ec, std::ignore) = co_await http::async_read_header(*s, buf, p, kNoThrow);
      if (ec) {
        if (reused && ec != beast::error::timeout) {  // the server closed an idle keep-alive
          s.reset();
          reused = false;
          continue;
        }
        failed("request", ec);
        break;
      }
      status = p.get().result_int();
      SseParser sse;
      std::vector<std::string> events;
      char chunk[16384];
      while (!p.is_done()) {
        p.get().body().data = chunk;
        p.get().body().size = sizeof chunk;
        arm();
        std::tie(ec, std::ignore) = co_await http::async_read_some(*s, buf, p, kNoThrow);
        if (ec == http::error::need_buffer) ec = {};
        if (ec) {
          failed("response", ec);
          break;
        }
        const double t = slot.Now();
        const size_t got = sizeof chunk - p.get().body().size;
        if (status != 200) {
          error_body.append(
              chunk, std::min<size_t>(got, 4096 - std::min<size_t>(4096, error_body.size())));
          continue;
        }
        sse.Feed(std::string_view(chunk, got), &events);
        for (const std::string& e : events) {
          const int tokens = state.Apply(ParseOpenAiEvent(e), t, r);
          if (tokens > 0 && slot.progress) {
            slot.progress->output_tokens.fetch_add(tokens, std::memory_order_relaxed);
          }
        }
        events.clear();
      }
      reusable = fail.empty() && p.is_done() && p.keep_alive();
      break;
    }
    r->end_s = slot.Now();
    FinishOpenAiStream(state, fail.empty() ? status : 200, error_body, r);
    if (!fail.empty()) {
      r->status_code = timed_out ? kDeadlineExceeded : kUnavailable;
      r->error = fail;
    }
    if (reusable) PutIdle(std::move(s));
    const bool ok = r->success();
    std::function<void(bool)> done = std::move(slot.done);
    done(ok);
  }

  const RunConfig& config_;
  const bool chat_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
  tcp::endpoint endpoint_;
  std::mutex mu_;
  std::vector<std::unique_ptr<beast::tcp_stream>> idle_;
};

}  // namespace

std::unique_ptr<Backend> MakeOpenAiBackend(const RunConfig& config, bool chat) {
  return std::make_unique<OpenAiBackend>(config, chat);
}

}  // namespace muse::bench
