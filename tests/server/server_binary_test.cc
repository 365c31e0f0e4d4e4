// End to end: the muse-server BINARY as a subprocess. Waits for health SERVING, sends SIGTERM in
// the middle of a stream, and checks that the stream completes and the process exits 0. Then a
// LLaVA muse-tiny (muse-make-model --preset llava-tiny) answered through `muse chat --image`, and
// the client's other commands, status names and exit codes.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <tuple>
#include <utility>

#include "tests/server/test_util.h"

namespace muse::server {
namespace {

using namespace muse::server::testing;

// Runs a shell command; returns its exit status and stdout.
std::pair<int, std::string> RunCommand(const std::string& cmd) {
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return {-1, ""};
  std::string out;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(ServerBinaryTest, SigtermDrainsInFlightStreamAndExitsZero) {
  const std::string model = TinyModelDir();
  const int port = FreePort();
  const std::string bin = std::string(MUSE_BIN_DIR) + "/muse-server";
  const std::string port_s = std::to_string(port);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::execl(bin.c_str(), bin.c_str(), "--model", model.c_str(), "--host", "127.0.0.1", "--port",
            port_s.c_str(), "--no-auth", "--threads", "1", "--num-kv-blocks", "128",
            "--drain-grace-seconds", "60", "--log-level", "warn", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  auto health = HealthStub(port);
  bool saw_serving = WaitFor(
      [&] { return HealthStatus(*health) == grpc::health::v1::HealthCheckResponse::SERVING; },
      std::chrono::seconds(120));
  if (!saw_serving) ::kill(pid, SIGKILL);
  ASSERT_TRUE(saw_serving);

  auto stub = Stub(port);
  grpc::ClientContext ctx;
  auto reader = stub->Generate(&ctx, GreedyPrompt("Shutting down soon", 150));
  v1::GenerateResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  int64_t tokens = resp.samples(0).token_ids_size();
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  bool finished = false;
  while (reader->Read(&resp)) {
    for (const auto& s : resp.samples()) tokens += s.token_ids_size();
    finished = resp.finished();
  }
  grpc::Status st = reader->Finish();
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(finished);
  EXPECT_EQ(tokens, 150);

  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
  EXPECT_TRUE(WIFEXITED(wstatus));
  EXPECT_EQ(WEXITSTATUS(wstatus), 0);
}

TEST(ServerBinaryTest, LlavaMuseTinyAnswersMuseChatWithAnImage) {
  const std::string model = LlavaModelDir();
  const std::string image = ::testing::TempDir() + "/muse_chat_image.png";
  std::ofstream(image, std::ios::binary) << PatternPng(48, 32, 11);
  const int port = FreePort();
  const std::string bin = std::string(MUSE_BIN_DIR) + "/muse-server";
  const std::string port_s = std::to_string(port);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::execl(bin.c_str(), bin.c_str(), "--model", model.c_str(), "--host", "127.0.0.1", "--port",
            port_s.c_str(), "--no-auth", "--threads", "1", "--num-kv-blocks", "64", "--log-level",
            "warn", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  auto health = HealthStub(port);
  bool saw_serving = WaitFor(
      [&] { return HealthStatus(*health) == grpc::health::v1::HealthCheckResponse::SERVING; },
      std::chrono::seconds(120));
  if (saw_serving) {
    const std::string muse = std::string(MUSE_BIN_DIR) + "/muse";
    auto [rc, out] =
        RunCommand("echo 'What is in this image?' | " + muse + " chat --addr 127.0.0.1:" + port_s +
                   " --image " + image + " --max-tokens 5 --temperature 0 --ids 2>&1");
    EXPECT_EQ(rc, 0) << out;
    // The prompt holds the 16 image rows; 5 tokens came back.
    EXPECT_NE(out.find(" + 5 completion tokens"), std::string::npos) << out;
    int prompt_tokens = 0;
    const size_t at = out.find('[');
    ASSERT_NE(at, std::string::npos) << out;
    prompt_tokens = std::atoi(out.c_str() + at + 1);
    EXPECT_GT(prompt_tokens, 16) << out;

    // Connection flags go before or after the command; results alone on stdout.
    std::tie(rc, out) = RunCommand(muse + " --addr=127.0.0.1:" + port_s + " models 2>/dev/null");
    EXPECT_EQ(rc, 0) << out;
    const std::string id = model.substr(model.find_last_of('/') + 1);
    EXPECT_EQ(out.rfind(id + "\tarch=", 0), 0u) << out;  // one line per model, nothing else
    EXPECT_NE(out.find("images=yes"), std::string::npos) << out;
    // RPC errors: the gRPC status name on stderr, exit 1.
    std::tie(rc, out) =
        RunCommand(muse + " generate --prompt hi --max-tokens 100000 --addr 127.0.0.1:" + port_s +
                   " 2>&1 >/dev/null");
    EXPECT_EQ(rc, 1) << out;
    EXPECT_NE(out.find("muse: INVALID_ARGUMENT: "), std::string::npos) << out;
    // Usage errors: exit 2, the flag named, before any RPC.
    std::tie(rc, out) =
        RunCommand(muse + " generate --prompt hi --top-p 1.5 --addr 127.0.0.1:" + port_s + " 2>&1");
    EXPECT_EQ(rc, 2) << out;
    EXPECT_NE(out.find("--top-p"), std::string::npos) << out;
  }
  ::kill(pid, SIGTERM);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(saw_serving);
  EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
}

}  // namespace
}  // namespace muse::server
