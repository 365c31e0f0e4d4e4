#include "src/runtime/tensor_parallel_group.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "src/collective/gloo_communicator.h"

namespace muse::runtime {
namespace {

std::string DescribeExit(int wstatus) {
  if (WIFEXITED(wstatus)) return absl::StrCat("exited with status ", WEXITSTATUS(wstatus));
  if (WIFSIGNALED(wstatus)) {
    return absl::StrCat("was killed by signal ", WTERMSIG(wstatus), " (",
                        strsignal(WTERMSIG(wstatus)), ")");
  }
  return absl::StrCat("ended (wait status ", wstatus, ")");
}

}  // namespace

absl::StatusOr<std::unique_ptr<TensorParallelGroup>> TensorParallelGroup::Start(
    const TensorParallelGroupOptions& options) {
  if (options.size < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor_parallel_size: a group needs >= 2 ranks, got ", options.size));
  }
  if (access(options.worker_binary.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("tensor parallel: the worker binary ",
                                                      options.worker_binary, " is not executable"));
  }
  auto g = std::unique_ptr<TensorParallelGroup>(new TensorParallelGroup());
  g->options_ = options;
  char dir[] = "/tmp/muse-tp-XXXXXX";
  if (mkdtemp(dir) == nullptr) {
    return absl::InternalError(absl::StrCat("tensor parallel: mkdtemp: ", std::strerror(errno)));
  }
  g->store_dir_ = dir;
  g->exited_.assign(options.size - 1, false);
  g->watcher_ = std::thread([p = g.get()] { p->Watch(); });
  {
    std::unique_lock lock(g->mu_);
    g->cv_.wait(lock, [&] { return g->spawned_; });
    RETURN_IF_ERROR(g->spawn_error_);
  }
  collective::GlooOptions go;
  go.rank = 0;
  go.size = options.size;
  go.store_dir = g->store_dir_;
  go.timeout = absl::Seconds(options.timeout_seconds);
  auto comm = collective::ConnectGloo(go);
  if (!comm.ok()) {
    // A worker that died before joining says more than the timeout.
    absl::Status health = g->Health();
    return health.ok() ? comm.status() : health;
  }
  g->comm_ = std::move(*comm);
  spdlog::info("tensor parallel: {} ranks connected (workers {})", options.size, [&] {
    std::string s;
    for (pid_t p : g->pids_) absl::StrAppend(&s, s.empty() ? "" : ", ", p);
    return s;
  }());
  return g;
}

void TensorParallelGroup::Watch() {
  // Spawn from this thread: PR_SET_PDEATHSIG fires when the thread that forked exits, and this one
  // lives exactly as long as the group.
  const pid_t parent = getpid();
  absl::Status error;
  for (int rank = 1; rank < options_.size && error.ok(); ++rank) {
    std::vector<std::string> args = {options_.worker_binary, absl::StrCat("--rank=", rank),
                                     absl::StrCat("--size=", options_.size),
                                     absl::StrCat("--store=", store_dir_),
                                     absl::StrCat("--timeout-seconds=", options_.timeout_seconds)};
    args.insert(args.end(), options_.worker_args.begin(), options_.worker_args.end());
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = fork();
    if (pid == 0) {
      // Child: async-signal-safe calls only until exec.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);  // the parent is already gone
      execv(argv[0], argv.data());
      _exit(127);
    }
    if (pid < 0) {
      error = absl::UnavailableError(
          absl::StrCat("tensor parallel: starting rank ", rank, ": fork: ", std::strerror(errno)));
    } else {
      pids_.push_back(pid);
    }
  }
  {
    std::lock_guard lock(mu_);
    spawned_ = true;
    spawn_error_ = error;
  }
  cv_.notify_all();
  // Reap: note the first worker that ends; keep going until the destructor says stop and every
  // worker is gone.
  std::unique_lock lock(mu_);
  while (true) {
    bool all_exited = true;
    for (size_t i = 0; i < pids_.size(); ++i) {
      if (exited_[i]) continue;
      int wstatus = 0;
      const pid_t r = waitpid(pids_[i], &wstatus, WNOHANG);
      if (r == pids_[i] || (r < 0 && errno == ECHILD)) {
        exited_[i] = true;
        const std::string how = r == pids_[i] ? DescribeExit(wstatus) : "is gone";
        if (!stopping_) {
          spdlog::error("tensor parallel: rank {} (pid {}) {}", i + 1, pids_[i], how);
          if (health_.ok()) {
            health_ = absl::UnavailableError(
                absl::StrCat("tensor-parallel rank ", i + 1, " (pid ", pids_[i], ") ", how));
          }
        }
        continue;
      }
      all_exited = false;
    }
    if (stopping_ && all_exited) return;
    cv_.wait_for(lock, std::chrono::milliseconds(100));
  }
}

absl::Status TensorParallelGroup::Health() const {
  std::lock_guard lock(mu_);
  return health_;
}

TensorParallelGroup::~TensorParallelGroup() {
  comm_.reset();  // closes this rank's sockets: a worker still in a collective fails at once
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(options_.timeout_seconds);
  {
    std::unique_lock lock(mu_);
    stopping_ = true;
    // Workers told to stop exit by themselves; give them until the deadline, then kill the rest.
    while (std::chrono::steady_clock::now() < deadline) {
      bool all = true;
      for (bool e : exited_) all = all && e;
      if (all) break;
      cv_.wait_for(lock, std::chrono::milliseconds(20));
    }
    for (size_t i = 0; i < pids_.size(); ++i) {
      if (!exited_[i]) {
        spdlog::warn("tensor parallel: rank {} (pid {}) did not exit; killing it", i + 1, pids_[i]);
        kill(pids_[i], SIGKILL);
      }
    }
  }
  cv_.notify_all();
  if (watcher_.joinable()) watcher_.join();
  std::error_code ec;
  std::filesystem::remove_all(store_dir_, ec);
}

}  // namespace muse::runtime
