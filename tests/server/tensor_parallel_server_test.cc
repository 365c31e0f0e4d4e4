// End to end (issue 20): the muse-server BINARY with --tensor-parallel-size 2 (rank 0 in the
// server, rank 1 a muse-tp-worker child) answers greedy requests with the same tokens as one rank;
// a worker killed with SIGKILL mid-stream ends the stream UNAVAILABLE, the server exits non-zero
// by itself, and no worker is left behind.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/server/test_util.h"

namespace muse::server {
namespace {

using namespace muse::server::testing;

// Children of `parent` whose command name is `comm`, from /proc.
std::vector<pid_t> Children(pid_t parent, const std::string& comm) {
  std::vector<pid_t> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::ifstream stat(e.path() / "stat");
    std::string line;
    if (!stat || !std::getline(stat, line)) continue;
    const size_t open = line.find('('), close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::string state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent && line.substr(open + 1, close - open - 1) == comm) {
      out.push_back(std::stoi(line.substr(0, open)));
    }
  }
  return out;
}

bool Gone(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

class ServerProcess {
 public:
  ServerProcess(int tp, int port) : port_(port) {
    const std::string bin = std::string(MUSE_BIN_DIR) + "/muse-server";
    const std::string model = TinyModelDir();
    const std::string port_s = std::to_string(port), tp_s = std::to_string(tp);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execl(bin.c_str(), bin.c_str(), "--model", model.c_str(), "--host", "127.0.0.1", "--port",
              port_s.c_str(), "--no-auth", "--threads", "1", "--num-kv-blocks", "128",
              "--tensor-parallel-size", tp_s.c_str(), "--tp-timeout-seconds", "10", "--log-level",
              "warn", static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~ServerProcess() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  bool WaitServing() {
    auto health = HealthStub(port_);
    return WaitFor(
        [&] { return HealthStatus(*health) == grpc::health::v1::HealthCheckResponse::SERVING; },
        std::chrono::seconds(120));
  }
  // Waits up to `timeout` for the process to exit by itself; its wait status, or -1.
  int WaitExit(std::chrono::seconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      int wstatus = 0;
      if (::waitpid(pid_, &wstatus, WNOHANG) == pid_) {
        reaped_ = true;
        return wstatus;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }
  void Term() {
    ::kill(pid_, SIGTERM);
    WaitExit(std::chrono::seconds(60));
  }
  pid_t pid() const { return pid_; }
  int port() const { return port_; }

 private:
  int port_;
  pid_t pid_ = -1;
  bool reaped_ = false;
};

std::vector<std::vector<int32_t>> Answers(int port) {
  auto stub = Stub(port);
  std::vector<std::vector<int32_t>> out;
  for (const char* prompt : {"Tensor parallel ranks", "A second, somewhat longer prompt here"}) {
    StreamResult r = RunStream(*stub, GreedyPrompt(prompt, 40), "");
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    out.push_back(r.ids);
  }
  return out;
}

TEST(TensorParallelServer, TwoRanksAnswerAsOneAndALostWorkerStopsTheServer) {
  std::vector<std::vector<int32_t>> want;
  {
    ServerProcess one(1, FreePort());
    ASSERT_TRUE(one.WaitServing());
    want = Answers(one.port());
    one.Term();
  }
  ServerProcess two(2, FreePort());
  ASSERT_TRUE(two.WaitServing());
  const std::vector<pid_t> workers = Children(two.pid(), "muse-tp-worker");
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(Answers(two.port()), want);

  // Mid-stream, the worker dies.
  auto stub = Stub(two.port());
  grpc::ClientContext ctx;
  auto reader = stub->Generate(&ctx, GreedyPrompt("This stream loses a rank", 800));
  v1::GenerateResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  ASSERT_EQ(::kill(workers[0], SIGKILL), 0);
  const auto killed = std::chrono::steady_clock::now();
  while (reader->Read(&resp)) {
  }
  const grpc::Status st = reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  EXPECT_NE(st.error_message().find("rank 1"), std::string::npos) << st.error_message();
  // The server stops by itself, non-zero, within a bounded time.
  const int wstatus = two.WaitExit(std::chrono::seconds(30));
  ASSERT_NE(wstatus, -1) << "muse-server did not exit after losing its worker";
  EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) != 0) << wstatus;
  EXPECT_LT(std::chrono::steady_clock::now() - killed, std::chrono::seconds(30));
  EXPECT_TRUE(Gone(workers[0]));
}

}  // namespace
}  // namespace muse::server
