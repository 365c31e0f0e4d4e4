// gRPC admission of structured-output requests (issue 17): a response format the grammar cache
// does not hold compiles on the compile pool, never on a gRPC thread, and the request launches
// from there. The server runs with a test hook (ServerOptions::compile_hook_for_testing) that
// holds each compile at its start until the test opens a gate -- a real synchronisation point on
// the pool thread, so "while the schemas compile" is a state the test controls, not a timing.
//
// - An unconstrained stream runs to its end while four requests with new schemas are held at
//   their compile; none of them reaches the engine until the gate opens; then each completes and
//   its output matches its schema. A repeat of a compiled schema is admitted inline (the cache
//   holds it) even while the gate is closed.
// - Cancel and deadline during the compile and while queued behind it: the RPC ends at once, the
//   request never reaches the engine (no abort, no KV), the in-flight count returns to zero, and a
//   queued request that was cancelled is never compiled.
// - The start-up warm-up fills the vocabulary's shared token classes before the first request.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "src/server/server.h"
#include "tests/server/test_util.h"

namespace muse::server {
namespace {

using namespace muse::server::testing;
using json = nlohmann::json;

// Where the compile-pool threads wait. Open by default, so the suite's server starts normally.
class Gate {
 public:
  void Pass() {
    std::unique_lock lock(mu_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
    --waiting_;
    ++passed_;
  }
  void Close() {
    std::lock_guard lock(mu_);
    open_ = false;
  }
  void Open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  bool WaitForWaiting(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return waiting_ == n; });
  }
  int passed() {
    std::lock_guard lock(mu_);
    return passed_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = true;
  int waiting_ = 0;
  int passed_ = 0;
};

// A schema no other request of the process has sent (the tag is in its property names), so it
// misses the grammar cache.
std::string FreshSchema(const std::string& tag) {
  return json{{"type", "object"},
              {"additionalProperties", false},
              {"required", {"id_" + tag, "kind_" + tag, "ok"}},
              {"properties",
               {{"id_" + tag, {{"type", "integer"}, {"minimum", 0}, {"maximum", 999}}},
                {"kind_" + tag, {{"enum", {"a", "b", "c"}}}},
                {"ok", {{"type", "boolean"}}},
                {"note", {{"type", "string"}, {"maxLength", 4}}}}}}
      .dump();
}

// "" when `text` is an instance of FreshSchema(tag), else why not.
std::string Invalid(const std::string& tag, const std::string& text) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return "not a JSON object";
  if (!j.contains("id_" + tag) || !j["id_" + tag].is_number_integer()) return "id";
  const int64_t id = j["id_" + tag].get<int64_t>();
  if (id < 0 || id > 999) return "id range";
  if (!j.contains("kind_" + tag) || !j["kind_" + tag].is_string()) return "kind";
  if (!j.contains("ok") || !j["ok"].is_boolean()) return "ok";
  for (const auto& [k, v] : j.items()) {
    if (k != "id_" + tag && k != "kind_" + tag && k != "ok" && k != "note") return "extra " + k;
  }
  if (j.contains("note")) {
    if (!j["note"].is_string()) return "note";
    const std::string note = j["note"].get<std::string>();
    // maxLength counts code points: every byte but UTF-8 continuation bytes.
    const auto points = std::count_if(
        note.begin(), note.end(), [](char c) { return (static_cast<uint8_t>(c) & 0xC0) != 0x80; });
    if (points > 4) return "note length";
  }
  return "";
}

v1::GenerateRequest Constrained(const std::string& tag) {
  v1::GenerateRequest r;
  r.set_prompt("json " + tag);
  r.mutable_sampling()->set_temperature(1);
  r.mutable_stopping()->set_max_tokens(200);
  r.mutable_response_format()->set_json_schema(FreshSchema(tag));
  return r;
}

class StructuredAdmissionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    gate_ = new Gate;
    ServerOptions o;
    o.model_dir = TinyModelDir();
    o.served_model_name = "tiny";
    o.host = "127.0.0.1";
    o.port = 0;
    o.metrics_port = 0;
    o.threads = 1;
    o.num_kv_blocks = 256;
    o.max_num_seqs = 8;
    o.api_keys_file = TinyModelDir() + "/api_keys.json";
    o.seed = 3;
    o.structured_compile_threads = 2;
    o.compile_hook_for_testing = [] { gate_->Pass(); };
    auto s = Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = s->release();
  }
  static void TearDownTestSuite() {
    gate_->Open();
    delete server_;
    server_ = nullptr;
    delete gate_;
    gate_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    stub_ = Stub(server_->port());
    // The engine's counters of earlier requests (the start-up warm-up included) are published.
    ASSERT_TRUE(WaitForIdleEngine(*server_));
  }
  void TearDown() override {
    gate_->Open();
    EXPECT_TRUE(WaitForIdleEngine(*server_));
    EXPECT_TRUE(WaitFor([] { return server_->in_flight() == 0; }, std::chrono::seconds(10)));
  }

  static std::string Tag() {
    static std::atomic<int> n{0};
    return absl::StrCat(::testing::UnitTest::GetInstance()->current_test_info()->name(), "_",
                        n.fetch_add(1));
  }
  grpc::Status Unary(const v1::GenerateRequest& req, v1::GenerateUnaryResponse* resp) {
    auto stub = Stub(server_->port());  // its own channel: callable from any thread
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer key-a");
    return stub->GenerateUnary(&ctx, req, resp);
  }
  double Metric(const std::string& name) {
    return MetricSum(HttpGet(server_->metrics_port(), "/metrics"), name);
  }

  static Server* server_;
  static Gate* gate_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};
Server* StructuredAdmissionTest::server_ = nullptr;
Gate* StructuredAdmissionTest::gate_ = nullptr;

TEST_F(StructuredAdmissionTest, UnconstrainedStreamRunsWhileNewSchemasCompile) {
  const engine::EngineStats before = server_->EngineStats();
  const int passed_before = gate_->passed();
  gate_->Close();
  constexpr int kConstrained = 4;
  std::vector<std::string> tags(kConstrained);
  std::vector<grpc::Status> status(kConstrained);
  std::vector<v1::GenerateUnaryResponse> resp(kConstrained);
  std::atomic<int> done{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < kConstrained; ++i) {
    tags[i] = Tag();
    clients.emplace_back([&, i] {
      status[i] = Unary(Constrained(tags[i]), &resp[i]);
      ++done;
    });
  }
  // Both compile threads hold a request at its compile; the other two wait in the pool's queue.
  ASSERT_TRUE(gate_->WaitForWaiting(2));
  ASSERT_TRUE(
      WaitFor([] { return server_->in_flight() == kConstrained; }, std::chrono::seconds(10)));

  // Meanwhile an unconstrained stream on the same server runs to its end.
  const StreamResult free = RunStream(*stub_, GreedyPrompt("free running", 24));
  ASSERT_TRUE(free.status.ok()) << free.status.error_message();
  EXPECT_EQ(free.ids.size(), 24u);
  EXPECT_EQ(done.load(), 0);
  // The engine saw the free stream only: the held requests are not in it.
  ASSERT_TRUE(WaitForIdleEngine(*server_));
  EXPECT_EQ(server_->EngineStats().requests_finished - before.requests_finished, 1);
  // (The free stream's OnDone may run just after its client saw the end.)
  EXPECT_TRUE(
      WaitFor([] { return server_->in_flight() == kConstrained; }, std::chrono::seconds(10)));

  gate_->Open();
  for (auto& t : clients) t.join();
  for (int i = 0; i < kConstrained; ++i) {
    SCOPED_TRACE(tags[i]);
    ASSERT_TRUE(status[i].ok()) << status[i].error_message();
    ASSERT_EQ(resp[i].completions_size(), 1);
    EXPECT_EQ(resp[i].completions(0).finish_reason(), v1::FINISH_REASON_STOP);
    EXPECT_EQ(Invalid(tags[i], resp[i].completions(0).text()), "") << resp[i].completions(0).text();
  }
  EXPECT_EQ(gate_->passed() - passed_before, kConstrained);  // each compiled on the pool

  // A compiled schema again: the cache holds it, so it is admitted inline, gate closed or not.
  gate_->Close();
  v1::GenerateUnaryResponse again;
  const grpc::Status st = Unary(Constrained(tags[0]), &again);
  gate_->Open();
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(Invalid(tags[0], again.completions(0).text()), "") << again.completions(0).text();
  EXPECT_EQ(gate_->passed() - passed_before, kConstrained);
}

TEST_F(StructuredAdmissionTest, CancelAndDeadlineWhileCompilingNeverLaunch) {
  const engine::EngineStats before = server_->EngineStats();
  const double misses_before = Metric("muse_grammar_cache_misses_total");
  gate_->Close();
  const std::string tag_a = Tag(), tag_b = Tag(), tag_c = Tag(), tag_d = Tag();
  // A (stream) and B (unary) are held at their compile; C (stream) and D (stream, 500 ms
  // deadline) wait behind them in the pool's queue.
  grpc::ClientContext ca;
  ca.AddMetadata("authorization", "Bearer key-a");
  auto ra = stub_->Generate(&ca, Constrained(tag_a));
  ASSERT_TRUE(gate_->WaitForWaiting(1));
  grpc::Status status_b;
  v1::GenerateUnaryResponse resp_b;
  std::thread b([&] { status_b = Unary(Constrained(tag_b), &resp_b); });
  ASSERT_TRUE(gate_->WaitForWaiting(2));
  grpc::ClientContext cc;
  cc.AddMetadata("authorization", "Bearer key-a");
  auto rc = stub_->Generate(&cc, Constrained(tag_c));
  grpc::ClientContext cd;
  cd.AddMetadata("authorization", "Bearer key-a");
  cd.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  auto rd = stub_->Generate(&cd, Constrained(tag_d));
  ASSERT_TRUE(WaitFor([] { return server_->in_flight() == 4; }, std::chrono::seconds(10)));
  const int passed_held = gate_->passed();

  ca.TryCancel();
  cc.TryCancel();
  v1::GenerateResponse r;
  EXPECT_FALSE(ra->Read(&r));
  EXPECT_EQ(ra->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_FALSE(rc->Read(&r));
  EXPECT_EQ(rc->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_FALSE(rd->Read(&r));
  EXPECT_EQ(rd->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // Those RPCs are over on the server too while A's job is still held and C's, D's queued.
  ASSERT_TRUE(WaitFor([] { return server_->in_flight() == 1; }, std::chrono::seconds(10)));
  EXPECT_EQ(gate_->passed(), passed_held);

  gate_->Open();
  b.join();
  ASSERT_TRUE(status_b.ok()) << status_b.error_message();
  EXPECT_EQ(Invalid(tag_b, resp_b.completions(0).text()), "") << resp_b.completions(0).text();

  // Only B reached the engine; nothing was aborted there, no KV is left referenced.
  ASSERT_TRUE(WaitForIdleEngine(*server_));
  const engine::EngineStats after = server_->EngineStats();
  EXPECT_EQ(after.requests_finished - before.requests_finished, 1);
  EXPECT_EQ(after.requests_aborted - before.requests_aborted, 0);
  EXPECT_EQ(after.requests_deadline - before.requests_deadline, 0);
  EXPECT_EQ(after.kv_blocks_used, 0);
  EXPECT_TRUE(WaitFor([] { return server_->in_flight() == 0; }, std::chrono::seconds(10)));
  // A was cancelled during its compile, which still finished into the cache; C and D were
  // cancelled while queued and never compiled.
  EXPECT_EQ(Metric("muse_grammar_cache_misses_total") - misses_before, 2);
  gate_->Close();
  v1::GenerateUnaryResponse again;
  const grpc::Status st = Unary(Constrained(tag_a), &again);  // inline: a cache hit
  gate_->Open();
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(Invalid(tag_a, again.completions(0).text()), "") << again.completions(0).text();
}

// The start-up warm-up (ServerOptions::structured_warmup): with structured_warmup_wait the server
// is SERVING only once the vocabulary's shared token classes exist -- before any request;
// without the warm-up there are none until a request compiles a constraint.
TEST(StructuredWarmupTest, FillsTheSharedTokenClassesBeforeTheFirstRequest) {
  for (const bool warmup : {true, false}) {
    SCOPED_TRACE(warmup ? "warm-up" : "no warm-up");
    ServerOptions o;
    o.model_dir = TinyModelDir();
    o.host = "127.0.0.1";
    o.port = 0;
    o.metrics_port = 0;
    o.threads = 1;
    o.num_kv_blocks = 64;
    o.no_auth = true;
    o.structured_warmup = warmup;
    o.structured_warmup_wait = true;
    auto s = Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_TRUE((*s)->serving());
    const std::string before = HttpGet((*s)->metrics_port(), "/metrics");
    ASSERT_TRUE(absl::StrContains(before, "# TYPE muse_token_classes_shared gauge")) << before;
    const double shared = MetricSum(before, "muse_token_classes_shared");
    if (warmup) {
      EXPECT_GT(shared, 0);
    } else {
      EXPECT_EQ(shared, 0);
    }
    // The warm-up went around the grammar cache: no entry, no compile counted.
    EXPECT_EQ(MetricSum(before, "muse_grammar_cache_entries"), 0);
    EXPECT_EQ(MetricSum(before, "muse_grammar_cache_misses_total"), 0);

    v1::GenerateRequest req = Constrained("warmup");
    grpc::ClientContext ctx;
    v1::GenerateUnaryResponse resp;
    const grpc::Status st = Stub((*s)->port())->GenerateUnary(&ctx, req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(Invalid("warmup", resp.completions(0).text()), "") << resp.completions(0).text();
    const std::string after = HttpGet((*s)->metrics_port(), "/metrics");
    EXPECT_GT(MetricSum(after, "muse_token_classes_shared"), 0);
    EXPECT_EQ(MetricSum(after, "muse_grammar_cache_misses_total"), 1);
  }
}

}  // namespace
}  // namespace muse::server
