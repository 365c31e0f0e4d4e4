// muse-bench against the real muse-server binary with muse-tiny on a free loopback port.
// Skips when the server binary or the model is not there (MUSE_SERVER_BIN overrides the path).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tests/bench/free_port.h"

namespace {

using muse::bench::testing::FreePort;

class ServerLoopback : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* env = std::getenv("MUSE_SERVER_BIN");
    server_ = env ? env : MUSE_SERVER_BIN_DEFAULT;
    model_ = std::string(MUSE_SOURCE_DIR) + "/models/muse-tiny";
    if (!std::filesystem::exists(server_)) GTEST_SKIP() << "no muse-server at " << server_;
    if (!std::filesystem::exists(model_ + "/config.json")) GTEST_SKIP() << "no model at " << model_;
    port_ = FreePort();
    http_port_ = FreePort();
    ASSERT_NE(port_, 0);
    ASSERT_NE(http_port_, 0);
    pid_ = fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      const std::string port = std::to_string(port_), http_port = std::to_string(http_port_);
      const std::string log = ::testing::TempDir() + "/bench_server_" + port + ".log";
      if (freopen(log.c_str(), "w", stderr) == nullptr) _exit(126);
      execl(server_.c_str(), server_.c_str(), "--model", model_.c_str(), "--host", "127.0.0.1",
            "--port", port.c_str(), "--http-port", http_port.c_str(), "--no-auth",
            "--drain-grace-seconds", "1", "--log-level", "warn", static_cast<char*>(nullptr));
      _exit(127);
    }
    // Fail fast if the server dies (e.g. a bad flag) instead of letting muse-bench wait it out.
    for (int i = 0; i < 1800; ++i) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL() << "muse-server exited early; see " << ::testing::TempDir() << "/bench_server_"
               << port_ << ".log";
      }
      if (PortOpen()) return;
      usleep(100000);
    }
    FAIL() << "muse-server did not listen within 180 s";
  }
  bool PortOpen() const {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port_));
    const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    close(fd);
    return ok;
  }
  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      for (int i = 0; i < 100 && waitpid(pid_, &status, WNOHANG) == 0; ++i) usleep(100000);
      if (waitpid(pid_, &status, WNOHANG) == 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
      }
    }
  }
  int Bench(const std::string& args) {
    const std::string cmd = absl::StrCat(MUSE_BENCH_BIN, " --port ", port_,
                                         " --wait-for-server 120 --no-progress ", args);
    const int rc = std::system(cmd.c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  }

  std::string server_, model_;
  int port_ = 0, http_port_ = 0;
  pid_t pid_ = -1;
};

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream f(path);
  return nlohmann::json::parse(f);
}

TEST_F(ServerLoopback, RateSweepRandomWorkload) {
  const std::string dir = ::testing::TempDir();
  const std::string json_path = dir + "/bench_loopback.json",
                    html_path = dir + "/bench_loopback.html";
  ASSERT_EQ(Bench(absl::StrCat("--dataset-name random --random-input-len 16 --random-output-len 8 "
                               "--num-prompts 10 --rates 8,inf --seed 3 --slo ttft:10000 "
                               "--result-json ",
                               json_path, " --html ", html_path)),
            0);
  const nlohmann::json j = ReadJson(json_path);
  ASSERT_EQ(j["runs"].size(), 2u);
  for (const auto& run : j["runs"]) {
    const auto& s = run["summary"];
    EXPECT_EQ(s["completed"], 10);
    EXPECT_EQ(s["failed"], 0);
    EXPECT_EQ(s["total_output_tokens"], 80);
    EXPECT_GT(s["request_throughput"].get<double>(), 0);
    EXPECT_TRUE(s.contains("request_goodput"));
    ASSERT_EQ(run["requests"].size(), 10u);
    for (const auto& r : run["requests"]) {
      EXPECT_EQ(r["status"], "OK") << r["error"];
      EXPECT_EQ(r["output_tokens"], 8);  // ignore_eos + max_tokens: exact
      EXPECT_EQ(r["prompt_tokens"], r["expected_prompt_tokens"]);
      EXPECT_GT(r["ttft_s"].get<double>(), 0);
      EXPECT_GE(r["e2e_s"].get<double>(), r["ttft_s"].get<double>());
      EXPECT_EQ(r["itl_s"].size() + 1, r["chunk_tokens"].size());
    }
  }
  std::ifstream h(html_path);
  const std::string html((std::istreambuf_iterator<char>(h)), std::istreambuf_iterator<char>());
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("TTFT vs request rate"), std::string::npos);
}

TEST_F(ServerLoopback, DurationBoundClosedLoopWithPriorities) {
  const std::string json_path = ::testing::TempDir() + "/bench_loopback_dur.json";
  ASSERT_EQ(Bench(absl::StrCat("--dataset-name random --random-input-len 12 --random-output-len 4 "
                               "--random-range-ratio 0.5 --duration 1.5 --max-concurrency 3 "
                               "--priority-mix interactive:0.5,batch:0.5 --result-json ",
                               json_path)),
            0);
  const nlohmann::json j = ReadJson(json_path);
  const auto& run = j["runs"][0];
  EXPECT_EQ(run["summary"]["failed"], 0);
  EXPECT_GT(run["summary"]["completed"].get<int>(), 0);
  EXPECT_LE(run["summary"]["max_concurrent_requests"].get<int>(), 3);
  EXPECT_EQ(run["requests"].size(), run["summary"]["completed"].get<size_t>());
  for (const auto& r : run["requests"]) {
    EXPECT_LT(r["scheduled_s"].get<double>(), 1.5);
    EXPECT_EQ(r["output_tokens"], r["max_tokens"]);
  }
}

// The same workload over gRPC and both OpenAI HTTP routes (SSE) in one invocation: every request
// completes with exactly max_tokens, TTFT/ITL come from the chunks, usage gives the token counts,
// and the HTTP-vs-gRPC comparison is reported.
TEST_F(ServerLoopback, SameWorkloadOverEachBackend) {
  const std::string json_path = ::testing::TempDir() + "/bench_loopback_backends.json";
  ASSERT_EQ(Bench(absl::StrCat("--http-port ", http_port_,
                               " --backend grpc,openai-completions,openai-chat --dataset-name "
                               "random --random-input-len 16 --random-output-len 8 --num-prompts 6 "
                               "--rates 4,inf --max-concurrency 3 --seed 5 --result-json ",
                               json_path)),
            0);
  const nlohmann::json j = ReadJson(json_path);
  ASSERT_EQ(j["runs"].size(), 6u);  // 2 rates x 3 backends, backends alternating per rate
  const std::vector<std::string> order = {"grpc", "openai-completions", "openai-chat"};
  for (size_t i = 0; i < j["runs"].size(); ++i) {
    const auto& run = j["runs"][i];
    const std::string backend = run["backend"];
    EXPECT_EQ(backend, order[i % 3]);
    const auto& s = run["summary"];
    EXPECT_EQ(s["completed"], 6) << backend;
    EXPECT_EQ(s["failed"], 0) << backend;
    EXPECT_EQ(s["total_output_tokens"], 48) << backend;
    EXPECT_GT(s["output_throughput"].get<double>(), 0);
    for (const auto& r : run["requests"]) {
      EXPECT_EQ(r["status"], "OK") << backend << ": " << r["error"];
      EXPECT_EQ(r["output_tokens"], 8) << backend;  // usage (include_usage over HTTP)
      if (backend != "openai-chat") {               // chat adds its template's tokens
        EXPECT_EQ(r["prompt_tokens"], r["expected_prompt_tokens"]) << backend;
      } else {
        EXPECT_GT(r["prompt_tokens"].get<int64_t>(), 0);
      }
      EXPECT_GT(r["ttft_s"].get<double>(), 0) << backend;
      EXPECT_GE(r["e2e_s"].get<double>(), r["ttft_s"].get<double>());
      EXPECT_GE(r["chunk_tokens"].size(), 1u) << backend;
      EXPECT_EQ(r["itl_s"].size() + 1, r["chunk_tokens"].size()) << backend;
      int64_t sum = 0;
      for (const auto& n : r["chunk_tokens"]) sum += n.get<int64_t>();
      EXPECT_EQ(sum, 8) << backend;
    }
  }
  ASSERT_EQ(j["http_vs_grpc"].size(), 4u);  // 2 HTTP backends x 2 rates
  for (const auto& c : j["http_vs_grpc"]) {
    EXPECT_GT(c["http_output_tok_s"].get<double>(), 0);
    EXPECT_GT(c["grpc_output_tok_s"].get<double>(), 0);
  }
}

TEST_F(ServerLoopback, OpenAiBackendNeedsHttpPort) {
  EXPECT_EQ(Bench("--backend openai-chat --num-prompts 1"), 2);
  EXPECT_EQ(Bench("--backend http --num-prompts 1"), 2);
}

}  // namespace
