// The engine -> gRPC handoff with the real reactors, engine and CPU runner: the engine thread does
// no gRPC work (every message and status is sent from another thread), stalled pump threads do
// not stall the engine and their raises coalesce, a stream that finishes while its signal is
// queued is freed and its signal skipped, and many streams cancelled mid-stream leak nothing.
//
// The server is assembled here (not Server::Start) so that the test can wrap the runner, whose
// Forward runs on the engine thread, and add a gRPC interceptor, which runs on whichever thread
// starts a send (StartWrite / Finish).
#include <grpcpp/support/server_interceptor.h>
#include <pthread.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "src/runtime/model_runner.h"
#include "src/server/inference_service.h"
#include "src/server/tokenizer_text.h"
#include "tests/server/test_util.h"

namespace muse::server {
namespace {

using namespace muse::server::testing;
using namespace std::chrono_literals;

std::string ThreadName() {
  char name[16] = {};
  pthread_getname_np(pthread_self(), name, sizeof(name));
  return name;
}

// The real CPU runner; remembers the thread its Forward runs on (the engine thread).
class RecordingRunner final : public runtime::ModelRunner {
 public:
  explicit RecordingRunner(std::unique_ptr<runtime::ModelRunner> inner)
      : inner_(std::move(inner)) {}
  const models::ModelConfig& config() const override { return inner_->config(); }
  int64_t num_kv_blocks() const override { return inner_->num_kv_blocks(); }
  int64_t kv_block_bytes() const override { return inner_->kv_block_bytes(); }
  absl::Status Forward(const models::Batch& batch, models::Logits* out) override {
    std::lock_guard lock(mu_);
    threads_.insert(std::this_thread::get_id());
    return inner_->Forward(batch, out);
  }
  std::set<std::thread::id> threads() const {
    std::lock_guard lock(mu_);
    return threads_;
  }

 private:
  std::unique_ptr<runtime::ModelRunner> inner_;
  mutable std::mutex mu_;
  std::set<std::thread::id> threads_;
};

struct Send {
  std::string method;
  bool status = false;  // PRE_SEND_STATUS (else PRE_SEND_MESSAGE)
  std::thread::id thread;
  std::string thread_name;
};

class SendLog {
 public:
  void Add(Send s) {
    std::lock_guard lock(mu_);
    sends_.push_back(std::move(s));
  }
  std::vector<Send> sends() const {
    std::lock_guard lock(mu_);
    return sends_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Send> sends_;
};

// Runs on the thread that starts the send (the callback API runs interceptors inline).
class SendInterceptor final : public grpc::experimental::Interceptor {
 public:
  SendInterceptor(SendLog* log, std::string method) : log_(log), method_(std::move(method)) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* m) override {
    using grpc::experimental::InterceptionHookPoints;
    const bool msg = m->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_MESSAGE);
    const bool status = m->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS);
    if (msg) log_->Add({method_, false, std::this_thread::get_id(), ThreadName()});
    if (status) log_->Add({method_, true, std::this_thread::get_id(), ThreadName()});
    m->Proceed();
  }

 private:
  SendLog* log_;
  std::string method_;
};

class SendInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit SendInterceptorFactory(SendLog* log) : log_(log) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    const std::string method = info->method();
    if (method.rfind("/muse.v1.Inference/Generate", 0) != 0) return nullptr;
    return new SendInterceptor(log_, method);
  }

 private:
  SendLog* log_;
};

// Pump() of a Blocker parks a pump thread until released.
class Blocker final : public Pumpable {
 public:
  void Pump() override {
    std::unique_lock lock(mu_);
    ++entered_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return released_; });
  }
  void WaitEntered() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return entered_ > 0; });
  }
  void Release() {
    {
      std::lock_guard lock(mu_);
      released_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int entered_ = 0;
  bool released_ = false;
};

constexpr int kPumpThreads = 2;

class StreamHandoffTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = TinyModelDir();
    runtime::RunnerOptions ro;
    ro.model_dir = dir;
    ro.num_threads = 1;
    ro.num_kv_blocks = 1024;
    auto inner = runtime::CreateModelRunner(ro);
    ASSERT_TRUE(inner.ok()) << inner.status();
    auto runner = std::make_unique<RecordingRunner>(std::move(*inner));
    runner_ = runner.get();

    ctx_.pumps = std::make_unique<PumpPool>(kPumpThreads);
    auto m = std::make_unique<ServedModel>();
    m->id = "tiny";
    m->config = runner->config();
    m->kv_blocks_total = runner->num_kv_blocks();
    m->max_num_seqs = 32;
    auto tok = tokenizer::Tokenizer::FromDirectory(dir);
    ASSERT_TRUE(tok.ok()) << tok.status();
    m->tokenizer = std::move(*tok);
    engine::EngineOptions eo;
    eo.scheduler.max_num_seqs = 32;
    eo.scheduler.max_waiting = 256;
    eo.seed = 1;
    eo.text_decoder = std::make_shared<TokenizerDecoderFactory>(m->tokenizer.get());
    auto engine = engine::Engine::Create(std::move(runner), eo);
    ASSERT_TRUE(engine.ok()) << engine.status();
    ctx_.engine = std::move(*engine);
    m->max_model_len = ctx_.engine->max_model_len();
    ctx_.model = std::move(m);

    service_ = std::make_unique<InferenceService>(&ctx_);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(service_.get());
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
        interceptors;
    interceptors.push_back(std::make_unique<SendInterceptorFactory>(&sends_));
    builder.experimental().SetInterceptorCreators(std::move(interceptors));
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ctx_.ready = true;
    stub_ = Stub(port_);
  }

  // Server::Drain's order: engine, gRPC, then the pumps.
  void TearDown() override {
    for (auto& b : blockers_) b->Release();
    ctx_.draining = true;
    if (ctx_.engine) ctx_.engine->Shutdown();
    if (server_) {
      server_->Shutdown(std::chrono::system_clock::now() + 2s);
      server_->Wait();
    }
    ctx_.pumps->Stop();
  }

  // Parks every pump thread; returns once all of them are parked.
  void StallPumps() {
    for (int i = 0; i < kPumpThreads; ++i) {
      auto b = std::make_shared<Blocker>();
      blockers_.push_back(b);
      signals_.push_back(ctx_.pumps->NewSignal(b));
      signals_.back()->Raise();
      b->WaitEntered();
    }
  }
  void ReleasePumps() {
    for (auto& b : blockers_) b->Release();
  }

  bool Idle() {
    const auto s = ctx_.engine->Stats();
    return s.num_requests == 0 && s.kv_blocks_used == 0 && ctx_.in_flight.load() == 0 &&
           ctx_.reactors_alive.load() == 0;
  }

  std::thread::id EngineThread() {
    const auto t = runner_->threads();
    EXPECT_EQ(t.size(), 1u) << "Forward ran on more than one thread";
    return t.empty() ? std::thread::id() : *t.begin();
  }

  ServiceContext ctx_;
  RecordingRunner* runner_ = nullptr;
  std::unique_ptr<InferenceService> service_;
  SendLog sends_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::unique_ptr<v1::Inference::Stub> stub_;
  std::vector<std::shared_ptr<Blocker>> blockers_;
  std::vector<std::shared_ptr<PumpPool::Signal>> signals_;
};

TEST_F(StreamHandoffTest, NoMessageOrStatusIsSentFromTheEngineThread) {
  constexpr int kStreams = 24, kUnary = 8, kTokens = 16;
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int i = 0; i < kStreams; ++i) {
    clients.emplace_back([&, i] {
      auto stub = Stub(port_);
      StreamResult r = RunStream(*stub, GreedyPrompt("stream " + std::to_string(i), kTokens), "");
      EXPECT_TRUE(r.status.ok()) << r.status.error_message();
      EXPECT_EQ(r.ids.size(), static_cast<size_t>(kTokens));
      if (r.status.ok()) ok.fetch_add(1);
    });
  }
  for (int i = 0; i < kUnary; ++i) {
    clients.emplace_back([&, i] {
      auto stub = Stub(port_);
      grpc::ClientContext c;
      v1::GenerateUnaryResponse u;
      grpc::Status st =
          stub->GenerateUnary(&c, GreedyPrompt("unary " + std::to_string(i), kTokens), &u);
      EXPECT_TRUE(st.ok()) << st.error_message();
      if (st.ok()) ok.fetch_add(1);
    });
  }
  for (auto& c : clients) c.join();
  ASSERT_EQ(ok.load(), kStreams + kUnary);
  ASSERT_TRUE(WaitFor([&] { return Idle(); }, 10s));

  const std::thread::id engine = EngineThread();
  const std::vector<Send> sends = sends_.sends();
  int stream_messages = 0, stream_status = 0, unary_status = 0, from_pumps = 0;
  for (const Send& s : sends) {
    EXPECT_NE(s.thread, engine) << s.method << (s.status ? " status" : " message")
                                << " sent from the engine thread";
    if (s.thread_name == "muse-pump") ++from_pumps;
    if (s.method == "/muse.v1.Inference/Generate") {
      s.status ? ++stream_status : ++stream_messages;
    } else if (s.status) {
      ++unary_status;
      // The final engine push is the only thing that can end a unary call here: a pump ends it.
      EXPECT_EQ(s.thread_name, "muse-pump");
    }
  }
  EXPECT_EQ(stream_status, kStreams);
  EXPECT_EQ(unary_status, kUnary);
  EXPECT_GE(stream_messages, kStreams);
  EXPECT_GT(from_pumps, 0);
}

TEST_F(StreamHandoffTest, StalledPumpsDoNotStallTheEngineAndItsRaisesCoalesce) {
  grpc::ClientContext c;
  auto reader = stub_->Generate(&c, GreedyPrompt("Keep going", 200));
  v1::GenerateResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  int64_t tokens = resp.samples(0).token_ids_size();

  StallPumps();
  const int64_t raises = ctx_.pumps->raises();
  const int64_t generated = ctx_.engine->Stats().num_generated_tokens;
  // The engine keeps stepping (and pushing into the stream) with no pump thread available.
  ASSERT_TRUE(
      WaitFor([&] { return ctx_.engine->Stats().num_generated_tokens >= generated + 40; }, 20s));
  // 40+ pushes, at most one queued signal (none if it was already queued).
  EXPECT_LE(ctx_.pumps->raises() - raises, 1);

  ReleasePumps();
  while (reader->Read(&resp)) {
    for (const auto& s : resp.samples()) tokens += s.token_ids_size();
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(tokens, 200);
  EXPECT_TRUE(WaitFor([&] { return Idle(); }, 10s));
}

TEST_F(StreamHandoffTest, StreamFinishedWhileItsSignalIsQueuedIsFreedAndSkipped) {
  grpc::ClientContext c;
  auto reader = stub_->Generate(&c, GreedyPrompt("Cancel me", 800));
  v1::GenerateResponse resp;
  ASSERT_TRUE(reader->Read(&resp));

  StallPumps();
  const int64_t pumps = ctx_.pumps->pumps();
  const int64_t generated = ctx_.engine->Stats().num_generated_tokens;
  // An engine push after the stall queues this stream's signal behind the parked pump threads.
  ASSERT_TRUE(WaitFor([&] { return ctx_.engine->Stats().num_generated_tokens > generated; }, 10s));

  c.TryCancel();  // OnCancel -> Abort + Finish(CANCELLED) on a gRPC thread -> OnDone
  while (reader->Read(&resp)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // Reactor destroyed, KV freed, although its signal is still queued and no pump has run.
  EXPECT_TRUE(WaitFor([&] { return Idle(); }, 10s))
      << "reactors_alive=" << ctx_.reactors_alive.load()
      << " kv=" << ctx_.engine->Stats().kv_blocks_used;
  EXPECT_EQ(ctx_.pumps->pumps(), pumps);

  ReleasePumps();
  // The two blockers finish; the dead stream's signal is dropped without a pump.
  ASSERT_TRUE(WaitFor([&] { return ctx_.pumps->pumps() == pumps + kPumpThreads; }, 5s));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(ctx_.pumps->pumps(), pumps + kPumpThreads);
  EXPECT_EQ(ctx_.pumps->raises() - ctx_.pumps->pumps(), 1) << "exactly one skipped signal";
}

TEST_F(StreamHandoffTest, ManyStreamsCancelledMidStreamLeakNothing) {
  constexpr int kStreams = 64;  // twice max_num_seqs: some are cancelled while still queued
  std::vector<std::thread> clients;
  std::atomic<int> finished_ok{0}, cancelled{0}, deadline{0};
  for (int i = 0; i < kStreams; ++i) {
    clients.emplace_back([&, i] {
      auto stub = Stub(port_);
      grpc::ClientContext c;
      if (i % 4 == 3) {
        // Unary with a short deadline: the deadline path of the unary reactor.
        c.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(30 + i));
        v1::GenerateUnaryResponse u;
        grpc::Status st =
            stub->GenerateUnary(&c, GreedyPrompt("deadline " + std::to_string(i), 800), &u);
        EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << st.error_message();
        if (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) deadline.fetch_add(1);
        return;
      }
      const bool cancel = i % 2 == 0;
      auto reader =
          stub->Generate(&c, GreedyPrompt("stream " + std::to_string(i), cancel ? 800 : 24));
      v1::GenerateResponse resp;
      int64_t tokens = 0;
      const int read_before_cancel = 1 + i % 3;
      for (int n = 0; reader->Read(&resp); ++n) {
        for (const auto& s : resp.samples()) tokens += s.token_ids_size();
        if (cancel && n + 1 == read_before_cancel) c.TryCancel();
      }
      grpc::Status st = reader->Finish();
      if (cancel) {
        EXPECT_EQ(st.error_code(), grpc::StatusCode::CANCELLED) << st.error_message();
        if (st.error_code() == grpc::StatusCode::CANCELLED) cancelled.fetch_add(1);
      } else {
        EXPECT_TRUE(st.ok()) << st.error_message();
        EXPECT_EQ(tokens, 24);
        if (st.ok()) finished_ok.fetch_add(1);
      }
    });
  }
  for (auto& c : clients) c.join();
  EXPECT_EQ(finished_ok.load(), kStreams / 4);
  EXPECT_EQ(cancelled.load(), kStreams / 2);
  EXPECT_EQ(deadline.load(), kStreams / 4);
  EXPECT_TRUE(WaitFor([&] { return Idle(); }, 20s))
      << "requests=" << ctx_.engine->Stats().num_requests
      << " kv=" << ctx_.engine->Stats().kv_blocks_used << " in_flight=" << ctx_.in_flight.load()
      << " reactors_alive=" << ctx_.reactors_alive.load();
  EXPECT_GE(ctx_.engine->Stats().requests_aborted + ctx_.engine->Stats().requests_deadline,
            kStreams / 2);
  // Nothing from the engine thread, here either.
  const std::thread::id engine = EngineThread();
  for (const Send& s : sends_.sends()) EXPECT_NE(s.thread, engine);
}

}  // namespace
}  // namespace muse::server
