#include "src/server/openai_server.h"

#include <pthread.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "src/common/logging.h"
#include "src/server/chat_formats.h"
#include "src/server/openai_request.h"
#include "src/server/openai_response.h"
#include "src/server/openai_stream.h"
#include "src/server/output_accumulator.h"
#include "src/server/service_context.h"

namespace muse::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using json = nlohmann::json;
using asio::awaitable;
using Request = http::request<http::string_body>;
using TlsStream = asio::ssl::stream<beast::tcp_stream>;
using openai_io::CancelIo;
using openai_io::Chrono;
using openai_io::Generation;
using openai_io::kNoThrow;
using openai_io::PeerHungUp;
using openai_io::TimedWrite;

std::optional<std::string> AuthHeader(const Request& req) {
  auto it = req.find(http::field::authorization);
  if (it == req.end()) return std::nullopt;
  return std::string(it->value());
}

std::string_view Path(const Request& req) {
  std::string_view t(req.target().data(), req.target().size());
  return t.substr(0, t.find('?'));
}

}  // namespace

struct OpenAiServer::Impl {
  // Declared before ioc: coroutine frames still pending when the io_context is destroyed (Stop
  // shuts their sockets down but runs no more handlers) run their destructors then and touch
  // these.
  ServiceContext* ctx = nullptr;
  OpenAiServerOptions opts;
  std::atomic<int64_t> connections{0};
  std::atomic<int64_t> generations{0};
  int port = 0;
  std::mutex stop_mu;
  bool stopped = false;
  // Descriptors of the open connections. Stop shuts them down once the grace is over: a
  // connection whose request was still being read, or an idle keep-alive one, would otherwise
  // stay open with nobody serving it (its client waiting forever) until the server is destroyed.
  // A session removes its descriptor before its socket closes, so a shutdown never reaches a
  // reused descriptor.
  std::mutex sessions_mu;
  std::unordered_set<int> session_fds;
  std::optional<asio::ssl::context> tls;
  asio::io_context ioc;
  asio::strand<asio::io_context::executor_type> accept_strand{asio::make_strand(ioc)};
  tcp::acceptor acceptor{accept_strand};
  std::vector<std::thread> threads;
  // Admission of requests with a structured-output constraint runs here: compiling a new one (a
  // JSON schema with its token classes, ~0.1-1 s) on an io thread would stall every stream that
  // thread serves (measured: 3 concurrent new schemas held both io threads, 1.6 s gaps in 4
  // unrelated streams). Joined in Stop; destroyed before ioc.
  asio::thread_pool admit_pool{2};

  awaitable<void> Accept();
  template <class Stream>
  awaitable<void> Session(Stream stream);
  template <class Stream>
  awaitable<bool> Dispatch(Stream& stream, Request& req);
  template <class Stream>
  awaitable<bool> Generate(Stream& stream, Request& req, OpenAiEndpoint endpoint);
  template <class Stream>
  awaitable<bool> Reply(Stream& stream, const Request& req, int status, std::string body,
                        const char* content_type = "application/json", int retry_after_s = 0);
  template <class Stream>
  awaitable<bool> ReplyError(Stream& stream, const Request& req, const char* method,
                             const HttpError& e);
  template <class Stream>
  awaitable<bool> ReplyStatus(Stream& stream, const Request& req, const char* method,
                              const absl::Status& st) {
    co_return co_await ReplyError(stream, req, method, ToHttpError(st));
  }
  std::string ModelJson() const;
};

namespace {

const char* CodeName(int http_status) {
  switch (http_status) {
    case 200:
      return "OK";
    case 400:
    case 413:
    case 431:
      return "INVALID_ARGUMENT";
    case 401:
      return "UNAUTHENTICATED";
    case 403:
      return "PERMISSION_DENIED";
    case 404:
    case 405:
      return "NOT_FOUND";
    case 429:
      return "RESOURCE_EXHAUSTED";
    case 503:
      return "UNAVAILABLE";
    case 504:
      return "DEADLINE_EXCEEDED";
    default:
      return "INTERNAL";
  }
}

}  // namespace

template <class Stream>
awaitable<bool> OpenAiServer::Impl::Reply(Stream& stream, const Request& req, int status,
                                          std::string body, const char* content_type,
                                          int retry_after_s) {
  http::response<http::string_body> res{static_cast<http::status>(status), req.version()};
  res.set(http::field::server, "muse-serve");
  res.set(http::field::content_type, content_type);
  if (retry_after_s > 0) res.set(http::field::retry_after, std::to_string(retry_after_s));
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  auto [ec, n] = co_await http::async_write(stream, res, kNoThrow);
  co_return !ec;
}

template <class Stream>
awaitable<bool> OpenAiServer::Impl::ReplyError(Stream& stream, const Request& req,
                                               const char* method, const HttpError& e) {
  if (method != nullptr) ctx->metrics.RecordRequest(method, CodeName(e.status));
  co_return co_await Reply(stream, req, e.status, e.body, "application/json", e.retry_after_s);
}

std::string OpenAiServer::Impl::ModelJson() const {
  const ServedModel& m = *ctx->model;
  return json{{"id", m.id},   {"object", "model"},
              {"created", 0}, {"owned_by", "muse-serve"},
              {"root", m.id}, {"max_model_len", m.max_model_len}}
      .dump();
}

awaitable<void> OpenAiServer::Impl::Accept() {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::make_strand(ioc), kNoThrow);
    if (ec) {
      if (!acceptor.is_open()) co_return;
      // Out of descriptors and the like: back off rather than spin.
      spdlog::warn("http: accept failed: {}", ec.message());
      asio::steady_timer t(accept_strand, std::chrono::milliseconds(50));
      co_await t.async_wait(kNoThrow);
      continue;
    }
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    const auto ex = socket.get_executor();
    if (tls) {
      asio::co_spawn(ex, Session(TlsStream(beast::tcp_stream(std::move(socket)), *tls)),
                     asio::detached);
    } else {
      asio::co_spawn(ex, Session(beast::tcp_stream(std::move(socket))), asio::detached);
    }
  }
}

template <class Stream>
awaitable<void> OpenAiServer::Impl::Session(Stream stream) {
  connections.fetch_add(1);
  auto& tcp_stream = beast::get_lowest_layer(stream);
  const int fd = tcp_stream.socket().native_handle();
  {
    std::lock_guard lock(sessions_mu);
    session_fds.insert(fd);
  }
  // Runs before the stream (a coroutine parameter, destroyed after the locals) closes the socket.
  struct Registered {
    Impl* impl;
    int fd;
    ~Registered() {
      impl->connections.fetch_sub(1);
      std::lock_guard lock(impl->sessions_mu);
      impl->session_fds.erase(fd);
    }
  } registered{this, fd};
  if constexpr (std::is_same_v<Stream, TlsStream>) {
    tcp_stream.expires_after(std::chrono::seconds(30));
    auto [ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, kNoThrow);
    if (ec) co_return;
  }
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<uint32_t>(opts.max_header_bytes));
    parser.body_limit(static_cast<uint64_t>(opts.max_body_bytes));
    tcp_stream.expires_after(Chrono(opts.idle_timeout));
    auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, kNoThrow);
    if (!ec && parser.get()[http::field::expect] == "100-continue") {
      http::response<http::empty_body> cont{http::status::continue_, 11};
      auto [wec, wn] = co_await http::async_write(stream, cont, kNoThrow);
      ec = wec;
    }
    if (!ec && !parser.is_done())
      std::tie(ec, n) = co_await http::async_read(stream, buffer, parser, kNoThrow);
    if (ec) {
      Request bad;
      bad.version(11);
      bad.keep_alive(false);
      if (ec == http::error::body_limit) {
        co_await ReplyError(stream, bad, "HTTP",
                            MakeHttpError(413,
                                          absl::StrCat("body: request body exceeds the limit of ",
                                                       opts.max_body_bytes, " bytes"),
                                          "invalid_request_error", "body", "request_too_large"));
      } else if (ec == http::error::header_limit) {
        co_await ReplyError(stream, bad, "HTTP",
                            MakeHttpError(431,
                                          absl::StrCat("request headers exceed the limit of ",
                                                       opts.max_header_bytes, " bytes"),
                                          "invalid_request_error"));
      } else if (ec.category() == http::make_error_code(http::error::end_of_stream).category() &&
                 ec != http::error::end_of_stream && ec != http::error::partial_message) {
        co_await ReplyError(
            stream, bad, "HTTP",
            MakeHttpError(400, absl::StrCat("malformed HTTP request: ", ec.message()),
                          "invalid_request_error"));
      }
      break;  // eof, timeout, reset, or an error answered above: close
    }
    tcp_stream.expires_never();
    Request req = parser.release();
    const bool keep = req.keep_alive();
    if (!co_await Dispatch(stream, req) || !keep) break;
  }
  beast::error_code ec;
  if constexpr (std::is_same_v<Stream, TlsStream>) {
    tcp_stream.expires_after(std::chrono::seconds(2));
    co_await stream.async_shutdown(kNoThrow);
  } else {
    tcp_stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  }
}

template <class Stream>
awaitable<bool> OpenAiServer::Impl::Dispatch(Stream& stream, Request& req) {
  const std::string path(Path(req));
  const std::string verb(req.method_string());
  const bool get = req.method() == http::verb::get, post = req.method() == http::verb::post;
  auto wrong_method = [&](const char* allowed) -> HttpError {
    return MakeHttpError(405,
                         absl::StrCat(verb, " is not allowed on ", path, " (use ", allowed, ")"),
                         "invalid_request_error");
  };
  if (path == "/health") {
    if (!get) co_return co_await ReplyError(stream, req, nullptr, wrong_method("GET"));
    const bool ok = ctx->ready.load() && !ctx->draining.load();
    co_return co_await Reply(stream, req, ok ? 200 : 503, ok ? "SERVING\n" : "NOT_SERVING\n",
                             "text/plain");
  }
  if (path == "/v1/chat/completions" || path == "/v1/completions") {
    if (!post) co_return co_await ReplyError(stream, req, nullptr, wrong_method("POST"));
    co_return co_await Generate(
        stream, req,
        path == "/v1/chat/completions" ? OpenAiEndpoint::kChat : OpenAiEndpoint::kCompletions);
  }
  if (path == "/v1/models" || absl::StartsWith(path, "/v1/models/")) {
    const char* method = "GET /v1/models";
    if (!get) co_return co_await ReplyError(stream, req, method, wrong_method("GET"));
    auto tenant = CheckAccess(*ctx, AuthHeader(req));
    if (!tenant.ok()) co_return co_await ReplyStatus(stream, req, method, tenant.status());
    ctx->metrics.RecordRequest(method, "OK");
    if (path == "/v1/models") {
      co_return co_await Reply(stream, req, 200,
                               absl::StrCat(R"({"object":"list","data":[)", ModelJson(), "]}"));
    }
    const std::string id(path.substr(11));
    if (id != ctx->model->id) {
      co_return co_await ReplyError(
          stream, req, nullptr,
          MakeHttpError(404,
                        absl::StrCat("model: unknown model '", id, "' (this server serves '",
                                     ctx->model->id, "')"),
                        "not_found_error", "model", "model_not_found"));
    }
    co_return co_await Reply(stream, req, 200, ModelJson());
  }
  if (path == "/tokenize" || path == "/detokenize") {
    const char* method = path == "/tokenize" ? "POST /tokenize" : "POST /detokenize";
    if (!post) co_return co_await ReplyError(stream, req, method, wrong_method("POST"));
    auto tenant = CheckAccess(*ctx, AuthHeader(req));
    if (!tenant.ok()) co_return co_await ReplyStatus(stream, req, method, tenant.status());
    std::string body;
    absl::Status st;
    if (path == "/tokenize") {
      auto t = ParseTokenizeRequest(req.body());
      absl::StatusOr<v1::TokenizeResponse> r = t.ok() ? Tokenize(*ctx, t->request) : t.status();
      if (r.ok()) {
        json j = {{"count", r->token_ids_size()},
                  {"max_model_len", r->max_model_len()},
                  {"tokens", std::vector<int32_t>(r->token_ids().begin(), r->token_ids().end())},
                  {"token_strs", nullptr}};
        if (t->request.return_tokens()) {
          j["token_strs"] = std::vector<std::string>(r->tokens().begin(), r->tokens().end());
        }
        body = j.dump(-1, ' ', false, json::error_handler_t::replace);
      }
      st = r.status();
    } else {
      std::string model;
      auto ids = ParseDetokenizeRequest(req.body(), &model);
      absl::StatusOr<std::string> text = ids.ok() ? Detokenize(*ctx, model, *ids) : ids.status();
      if (text.ok()) {
        body = json{{"prompt", *text}}.dump(-1, ' ', false, json::error_handler_t::replace);
      }
      st = text.status();
    }
    if (!st.ok()) co_return co_await ReplyStatus(stream, req, method, st);
    ctx->metrics.RecordRequest(method, "OK");
    co_return co_await Reply(stream, req, 200, std::move(body));
  }
  co_return co_await ReplyError(
      stream, req, nullptr,
      MakeHttpError(404, absl::StrCat("route not found: ", verb, " ", path), "not_found_error"));
}

template <class Stream>
awaitable<bool> OpenAiServer::Impl::Generate(Stream& stream, Request& req,
                                             OpenAiEndpoint endpoint) {
  const bool chat = endpoint == OpenAiEndpoint::kChat;
  const char* method = chat ? "POST /v1/chat/completions" : "POST /v1/completions";
  auto tenant = CheckAccess(*ctx, AuthHeader(req));
  if (!tenant.ok()) co_return co_await ReplyStatus(stream, req, method, tenant.status());
  auto parsed = ParseOpenAiRequest(endpoint, req.body());
  req.body().clear();
  req.body().shrink_to_fit();  // images can be megabytes; the prepared pixels are kept instead
  if (!parsed.ok()) co_return co_await ReplyStatus(stream, req, method, parsed.status());
  OpenAiRequest& r = *parsed;

  // Chat output parsing (chat_formats.h): the forced tool calls, the model's own call format
  // (tool_choice auto with tools) and the reasoning channel.
  const ChatFormats& formats = ctx->model->chat_formats;
  using TC = OpenAiRequest::ToolChoice;
  const ToolMode tool_mode = r.tool_choice == TC::kRequired ? ToolMode::kRequired
                             : r.tool_choice == TC::kNamed  ? ToolMode::kNamed
                             : r.tool_choice == TC::kAuto   ? ToolMode::kModel
                                                            : ToolMode::kNone;
  const bool parse_output = chat && ParsesOutput(formats, tool_mode);
  // The model's own markers may be special tokens: keep them in the text the parser sees, unless
  // the client chose skip_special_tokens or sent stop strings (the core refuses those together).
  const bool keep_special =
      parse_output && KeepsSpecialTokens(formats, tool_mode, r.prompts[0].has_skip_special_tokens(),
                                         !r.prompts[0].stopping().stop().empty());
  if (keep_special) r.prompts[0].set_skip_special_tokens(false);

  const asio::any_io_executor strand = beast::get_lowest_layer(stream).get_executor();
  auto gen = std::make_shared<Generation>(strand);
  AdmitOptions ao;
  ao.build.max_tokens_fill_context = chat && !r.max_tokens_set;
  const bool constrained = !r.constraint.param.empty();
  for (size_t i = 0; i < r.prompts.size(); ++i) {
    absl::StatusOr<std::unique_ptr<Admission>> a;
    if (constrained) {  // may compile: off the io threads (see admit_pool)
      a = co_await asio::co_spawn(
          admit_pool,
          [&]() -> awaitable<absl::StatusOr<std::unique_ptr<Admission>>> {
            co_return Admit(*ctx, *tenant, std::move(r.prompts[i]), ao);
          },
          asio::use_awaitable);
    } else {
      a = Admit(*ctx, *tenant, std::move(r.prompts[i]), ao);
    }
    if (!a.ok()) {
      gen->AbortAll(*ctx);
      const absl::Status st = RenameCoreError(a.status(), r, static_cast<int>(i));
      co_return co_await ReplyStatus(stream, req, method, st);
    }
    gen->admissions.push_back(std::move(*a));
  }
  generations.fetch_add(1);
  ctx->in_flight.fetch_add(1);
  struct Count {
    ServiceContext* ctx;
    std::atomic<int64_t>& n;
    ~Count() {
      n.fetch_sub(1);
      ctx->in_flight.fetch_sub(1);
    }
  } count{ctx, generations};

  // A readable socket with nothing to read is the client hanging up: abort at once (frees the KV
  // before the next step), even while waiting for the image encoder or between writes. A wake-up
  // can be stale (see PeerHungUp): then watch again.
  auto& socket = beast::get_lowest_layer(stream).socket();
  auto watch = std::make_shared<std::function<void(beast::error_code)>>();
  *watch = [this, gen, &socket, &stream, strand,
            again = std::weak_ptr(watch)](beast::error_code ec) {
    if (ec || gen->done) return;
    beast::error_code aec;
    if (socket.available(aec) > 0 && !aec) return;  // pipelined request
    if (!PeerHungUp(socket.native_handle())) {
      if (auto w = again.lock()) {
        socket.async_wait(tcp::socket::wait_read, asio::bind_executor(strand, *w));
      }
      return;
    }
    gen->client_gone = true;
    gen->AbortAll(*ctx);
    CancelIo(stream);
    gen->wakeup->RaiseHere();
  };
  socket.async_wait(tcp::socket::wait_read, asio::bind_executor(strand, *watch));

  // Cache misses go through the image-encoder thread; its completion comes back to the strand.
  for (size_t i = 0; i < gen->admissions.size(); ++i) {
    Admission& a = *gen->admissions[i];
    if (a.stream) continue;
    ++gen->pending_images;
    ImageEncoderWorker::Job job;
    job.images = a.ImagesToEncode();
    job.audios = a.AudiosToEncode();
    job.cancelled = [gen] { return gen->cancelled.load(); };
    job.done = [this, gen, i, strand](absl::StatusOr<std::vector<vision::ImageEmbedding>> enc) {
      asio::post(strand, [this, gen, i, enc = std::move(enc)]() mutable {
        --gen->pending_images;
        Admission& a = *gen->admissions[i];
        absl::Status st = enc.status();
        if (st.ok() && !gen->cancelled.load()) {
          a.SetEncoded(std::move(*enc));
          st = Launch(*ctx, a);
        }
        if (!st.ok() && gen->launch_error.ok() && !gen->cancelled.load()) gen->launch_error = st;
        gen->wakeup->RaiseHere();
      });
    };
    ctx->image_encoder->Submit(std::move(job));
  }
  while (gen->pending_images > 0 && !gen->client_gone) {
    gen->timer->expires_after(std::chrono::hours(24));
    co_await gen->timer->async_wait(kNoThrow);
  }

  bool keep = !gen->client_gone;
  absl::Status final_status;
  if (gen->client_gone) {
    final_status = absl::CancelledError("client disconnected");
  } else if (!gen->launch_error.ok()) {
    gen->AbortAll(*ctx);
    final_status = RenameCoreError(gen->launch_error, r);  // images: chat only
  }
  gen->finished.assign(gen->admissions.size(), false);
  for (auto& a : gen->admissions) {
    gen->accs.push_back(std::make_unique<OutputAccumulator>(*ctx->model, *a, keep_special));
    if (a->stream && final_status.ok()) {
      a->stream->SetNotify([w = gen->wakeup] { w->Raise(); });
    }
  }

  const std::string id = absl::StrCat(chat ? "chatcmpl-" : "cmpl-", gen->admissions[0]->engine_id);
  const std::string model = r.model.empty() ? ctx->model->id : r.model;
  OpenAiResponder responder(r, *ctx->model->tokenizer, id, model, absl::ToUnixSeconds(absl::Now()));
  if (parse_output) {
    // Call ids are seeded from the response id and the choice: deterministic per response.
    const uint64_t seed = std::hash<std::string>{}(id);
    // parallel_tool_calls false: one call (auto keeps the model's first; the forced schemas allow
    // one already).
    responder.SetChatParsers([&formats, tool_mode, name = r.tool_choice_name, seed,
                              single = !r.parallel_tool_calls](int choice) {
      auto parser =
          MakeChatParser(formats, tool_mode, name,
                         seed ^ (0x9e3779b97f4a7c15ull * static_cast<uint64_t>(choice + 1)));
      if (single) parser->set_max_tool_calls(1);
      return parser;
    });
  }
  bool headers_sent = false;
  if (final_status.ok() && r.stream) {
    http::response<http::empty_body> res{http::status::ok, req.version()};
    res.set(http::field::server, "muse-serve");
    res.set(http::field::content_type, "text/event-stream");
    res.set(http::field::cache_control, "no-cache");
    res.keep_alive(req.keep_alive());
    res.chunked(true);
    http::response_serializer<http::empty_body> sr{res};
    auto [ec, n] = co_await http::async_write_header(stream, sr, kNoThrow);
    headers_sent = true;
    if (ec) {
      gen->client_gone = true;
      gen->AbortAll(*ctx);
      final_status = absl::CancelledError("write failed");
    }
  }

  // Drain -> one write -> wait for the next raise (or the ping interval).
  std::string out;
  while (final_status.ok()) {
    gen->wakeup->Take();
    out.clear();
    bool all = true;
    for (size_t i = 0; i < gen->admissions.size(); ++i) {
      if (gen->finished[i]) continue;
      std::map<int, v1::SampleDelta> samples;
      while (auto o = gen->admissions[i]->stream->TryNext()) {
        if (gen->accs[i]->Add(*o, &samples)) {
          gen->finished[i] = true;
          break;
        }
      }
      if (r.stream) {
        responder.AppendChunks(static_cast<int>(i), samples, &out);
      } else {
        responder.Collect(static_cast<int>(i), samples);
      }
      if (gen->finished[i]) {
        absl::Status st = FinalStatus(*gen->accs[i], gen->client_gone);
        if (!st.ok() && final_status.ok()) final_status = st;
      }
      all = all && gen->finished[i];
    }
    if (gen->client_gone) break;
    if (!out.empty()) {
      const beast::error_code ec = co_await TimedWrite(stream, http::make_chunk(asio::buffer(out)),
                                                       Chrono(opts.idle_timeout));
      if (ec) {
        gen->client_gone = true;
        gen->AbortAll(*ctx);
        break;
      }
    }
    if (all || !final_status.ok()) break;
    if (gen->wakeup->raised()) continue;
    gen->timer->expires_after(r.stream ? Chrono(opts.ping_interval) : std::chrono::hours(24));
    auto [tec] = co_await gen->timer->async_wait(kNoThrow);
    if (!tec && r.stream && !gen->client_gone) {
      static const std::string kPing = ": ping\n\n";
      const beast::error_code ec = co_await TimedWrite(
          stream, http::make_chunk(asio::buffer(kPing)), Chrono(opts.idle_timeout));
      if (ec) {
        gen->client_gone = true;
        gen->AbortAll(*ctx);
        break;
      }
    }
  }
  if (gen->client_gone && final_status.ok())
    final_status = absl::CancelledError("client disconnected");
  if (!final_status.ok()) gen->AbortAll(*ctx);  // one prompt failed: the others stop too
  gen->done = true;
  {
    beast::error_code ec;
    socket.cancel(ec);  // the disconnect watcher
  }

  engine::Usage usage;
  for (size_t i = 0; i < gen->admissions.size(); ++i) {
    Admission& a = *gen->admissions[i];
    if (!a.stream) continue;
    a.stream->SetNotify(nullptr);
    const OutputAccumulator& acc = *gen->accs[i];
    RecordFinished(*ctx, a, acc.usage(), acc.timings(), acc.last_reason());
    usage.prompt_tokens += acc.usage().prompt_tokens;
    usage.cached_tokens += acc.usage().cached_tokens;
    usage.completion_tokens += acc.usage().completion_tokens;
    usage.reasoning_tokens += acc.usage().reasoning_tokens;
  }
  MUSE_LOG_REQ(debug, id, "http {}: {} prompt(s), {} completion tokens, {}", method,
               gen->admissions.size(), usage.completion_tokens, final_status.ToString());
  if (gen->client_gone) {
    ctx->metrics.RecordRequest(method, "CANCELLED");
    co_return false;
  }
  if (!headers_sent) {
    if (!final_status.ok()) co_return co_await ReplyStatus(stream, req, method, final_status);
    ctx->metrics.RecordRequest(method, "OK");
    co_return co_await Reply(stream, req, 200, responder.Body(usage));
  }
  // Streaming: an error after the headers goes out as an error event (vLLM does the same).
  out.clear();
  if (!final_status.ok()) {
    absl::StrAppend(&out, "data: ", ToHttpError(final_status).body, "\n\n");
  } else if (r.include_usage) {
    responder.AppendUsageChunk(usage, &out);
  }
  out += "data: [DONE]\n\n";
  ctx->metrics.RecordRequest(
      method, final_status.ok() ? "OK" : absl::StatusCodeToString(final_status.code()));
  const beast::error_code ec1 =
      co_await TimedWrite(stream, http::make_chunk(asio::buffer(out)), Chrono(opts.idle_timeout));
  if (ec1) co_return false;
  const beast::error_code ec2 =
      co_await TimedWrite(stream, http::make_chunk_last(), Chrono(opts.idle_timeout));
  co_return !ec2 && keep;
}

absl::StatusOr<std::unique_ptr<OpenAiServer>> OpenAiServer::Start(ServiceContext* ctx,
                                                                  const OpenAiServerOptions& o) {
  auto impl = std::make_unique<Impl>();
  impl->ctx = ctx;
  impl->opts = o;
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (!o.tls_cert.empty()) {
    impl->tls.emplace(asio::ssl::context::tls_server);
    auto& t = *impl->tls;
    beast::error_code ec;
    t.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                  asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                  asio::ssl::context::no_tlsv1_1);
    if (t.use_certificate_chain_file(o.tls_cert, ec); ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tls-cert: ", o.tls_cert, ": ", ec.message()));
    }
    if (t.use_private_key_file(o.tls_key, asio::ssl::context::pem, ec); ec) {
      return absl::InvalidArgumentError(absl::StrCat("--tls-key: ", o.tls_key, ": ", ec.message()));
    }
    if (!o.tls_client_ca.empty()) {
      if (t.load_verify_file(o.tls_client_ca, ec); ec) {
        return absl::InvalidArgumentError(
            absl::StrCat("--tls-client-ca: ", o.tls_client_ca, ": ", ec.message()));
      }
      t.set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
    }
  }
  beast::error_code ec;
  const auto address = asio::ip::make_address(o.host, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("--host: ", o.host, ": ", ec.message()));
  const tcp::endpoint ep(address, static_cast<uint16_t>(o.port));
  auto& acc = impl->acceptor;
  if (acc.open(ep.protocol(), ec); !ec) acc.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acc.bind(ep, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("http: cannot listen on ", o.host, ":", o.port, ": ", ec.message()));
  }
  impl->port = acc.local_endpoint().port();
  Impl* p = impl.get();
  asio::co_spawn(impl->accept_strand, p->Accept(), asio::detached);
  for (int i = 0; i < std::max(1, o.threads); ++i) {
    impl->threads.emplace_back([p] {
      pthread_setname_np(pthread_self(), "muse-http");
      p->ioc.run();
    });
  }
  spdlog::info("OpenAI HTTP API on {}://{}:{} ({} io threads)",
               o.tls_cert.empty() ? "http" : "https", o.host, impl->port, std::max(1, o.threads));
  return std::unique_ptr<OpenAiServer>(new OpenAiServer(std::move(impl)));
}

OpenAiServer::OpenAiServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OpenAiServer::~OpenAiServer() {
  try {
    Stop(absl::ZeroDuration());
  } catch (const std::exception& e) {  // std::system_error from a mutex or join: nothing to do
    spdlog::error("http: stopping the server failed: {}", e.what());
  }
}

int OpenAiServer::port() const { return impl_->port; }
int64_t OpenAiServer::open_connections() const { return impl_->connections.load(); }
int64_t OpenAiServer::open_generations() const { return impl_->generations.load(); }

void OpenAiServer::Stop(absl::Duration grace) {
  std::lock_guard lock(impl_->stop_mu);
  if (impl_->stopped) return;
  impl_->stopped = true;
  asio::post(impl_->accept_strand, [p = impl_.get()] {
    beast::error_code ec;
    p->acceptor.close(ec);
  });
  const absl::Time deadline = absl::Now() + grace;
  while (impl_->generations.load() > 0 && absl::Now() < deadline)
    absl::SleepFor(absl::Milliseconds(10));
  {
    std::lock_guard lock(impl_->sessions_mu);
    for (int fd : impl_->session_fds) ::shutdown(fd, SHUT_RDWR);
  }
  impl_->ioc.stop();
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
  impl_->admit_pool.join();  // an admission still compiling posts its result to the stopped ioc
}

}  // namespace muse::server
