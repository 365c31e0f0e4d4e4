// Fault injection in the runner behind the real server (issue #15): the CPU runner wrapped in the
// test-only FaultInjectingRunner (ServerOptions::wrap_runner_for_testing). The streaming clients
// whose requests were in the failing step get INTERNAL naming the step; the client outside the
// step finishes OK; the server keeps serving.
#include <atomic>
#include <thread>

#include "src/server/server.h"
#include "tests/engine/fault_injecting_runner.h"
#include "tests/server/test_util.h"

namespace muse::server {
namespace {

using namespace muse::server::testing;
using muse::testing::FaultInjectingRunner;

class ServerFaultTest : public ::testing::TestWithParam<FaultInjectingRunner::Kind> {};

TEST_P(ServerFaultTest, FailedStepFailsOnlyItsStreamsAndTheServerServesOn) {
  ServerOptions o;
  o.model_dir = TinyModelDir();
  o.host = "127.0.0.1";
  o.port = 0;
  o.threads = 1;
  o.num_kv_blocks = 256;
  o.max_num_seqs = 2;  // the third client waits outside the failing step
  o.api_keys_file = TinyModelDir() + "/api_keys.json";
  o.seed = 1;
  std::atomic<FaultInjectingRunner*> runner{nullptr};
  o.wrap_runner_for_testing = [&](std::unique_ptr<runtime::ModelRunner> inner) {
    auto r = std::make_unique<FaultInjectingRunner>(std::move(inner));
    runner = r.get();
    return std::unique_ptr<runtime::ModelRunner>(std::move(r));
  };
  auto s = Server::Start(o);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_NE(runner.load(), nullptr);
  // Fail once: the first step in which two sequences decode together.
  const FaultInjectingRunner::Kind kind = GetParam();
  std::atomic<bool> fired{false};
  runner.load()->SetPolicy([&](int64_t, const models::Batch& b) {
    FaultInjectingRunner::Fault f;
    if (fired || b.num_seqs() != 2) return f;
    for (int i = 0; i < 2; ++i) {
      if (FaultInjectingRunner::QueryLen(b, i) != 1) return f;
    }
    fired = true;
    f.kind = kind;
    return f;
  });

  std::vector<StreamResult> results(3);
  std::vector<std::thread> clients;
  clients.reserve(3);
  for (int c = 0; c < 3; ++c) {
    clients.emplace_back([&, c] {
      auto stub = Stub((*s)->port());
      results[c] = RunStream(*stub, GreedyPrompt("Tell me story number " + std::to_string(c), 40));
    });
  }
  for (auto& t : clients) t.join();
  ASSERT_TRUE(fired.load());
  int failed = 0, ok = 0;
  for (const auto& r : results) {
    if (r.status.ok()) {
      ++ok;
      EXPECT_EQ(r.ids.size(), 40u);
      EXPECT_TRUE(r.last.finished());
    } else {
      ++failed;
      EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INTERNAL) << r.status.error_message();
      EXPECT_NE(r.status.error_message().find("model step"), std::string::npos)
          << r.status.error_message();
    }
  }
  EXPECT_EQ(failed, 2);
  EXPECT_EQ(ok, 1);

  // Served normally afterwards; nothing left behind.
  auto stub = Stub((*s)->port());
  const StreamResult after = RunStream(*stub, GreedyPrompt("And one more", 8));
  EXPECT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.ids.size(), 8u);
  EXPECT_TRUE((*s)->serving());
  EXPECT_TRUE(WaitFor([&] { return (*s)->EngineStats().num_requests == 0; },
                      std::chrono::milliseconds(2000)));
  const engine::EngineStats stats = (*s)->EngineStats();
  EXPECT_EQ(stats.kv_blocks_used, 0);
  EXPECT_EQ(stats.requests_failed, 2);
}

INSTANTIATE_TEST_SUITE_P(Faults, ServerFaultTest,
                         ::testing::Values(FaultInjectingRunner::Kind::kError,
                                           FaultInjectingRunner::Kind::kThrow),
                         [](const ::testing::TestParamInfo<FaultInjectingRunner::Kind>& info) {
                           return info.param == FaultInjectingRunner::Kind::kError ? "Error"
                                                                                   : "Throw";
                         });

}  // namespace
}  // namespace muse::server
