// muse-tp-worker: one tensor-parallel rank > 0 (issue 20). Started by rank 0 (muse-server
// --tensor-parallel-size N, through runtime::TensorParallelGroup), not by hand: it loads its shard
// of --model, joins the group through the rendezvous directory --store, then executes every batch
// rank 0 broadcasts until rank 0 says stop (exit 0) or is gone (exit 1, the reason on stderr).
#include <cstdio>
#include <exception>
#include <string>

#include "absl/time/time.h"
#include "src/collective/gloo_communicator.h"
#include "src/common/cli.h"
#include "src/common/logging.h"
#include "src/runtime/model_runner.h"

namespace {

int Fail(int rank, const absl::Status& st) {
  std::fprintf(stderr, "muse-tp-worker: rank %d: %s\n", rank, st.ToString().c_str());
  return muse::cli::kExitFailure;
}

}  // namespace

int main(int argc, char** argv) try {
  std::string log_level = "warn";
  muse::collective::GlooOptions g;
  int timeout_seconds = 30;
  muse::runtime::RunnerOptions ro;
  CLI::App app("One tensor-parallel worker rank; muse-server --tensor-parallel-size starts these.",
               "muse-tp-worker");
  muse::cli::ConfigureApp(app);
  app.add_option("--rank", g.rank, "this rank (>= 1)")->required()->check(CLI::Range(1, 1 << 16));
  app.add_option("--size", g.size, "ranks in the group")->required()->check(CLI::Range(2, 1 << 16));
  app.add_option("--store", g.store_dir, "the group's rendezvous directory")->required();
  app.add_option("--timeout-seconds", timeout_seconds, "rendezvous and collective timeout")
      ->check(CLI::Range(1, 86400));
  app.add_option("--model", ro.model_dir, "model directory")->required();
  app.add_option("--dtype", ro.dtype, "compute dtype")->capture_default_str();
  app.add_option("--threads", ro.num_threads, "CPU threads (0 = all)")->check(CLI::Range(0, 4096));
  app.add_option("--num-kv-blocks", ro.num_kv_blocks, "KV pool blocks (0 = from --kv-cache-bytes)");
  app.add_option("--kv-cache-bytes", ro.kv_cache_bytes, "KV pool bytes");
  app.add_option("--cpu-kernels", ro.cpu_kernels, "muse's CPU kernels for fp32");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error")->capture_default_str();
  if (auto rc = muse::cli::ParseCommandLine(app, argc, argv)) return *rc;
  muse::InitLogging(log_level);
  if (g.rank >= g.size) {
    return Fail(g.rank, absl::InvalidArgumentError("--rank must be < --size"));
  }
  g.timeout = absl::Seconds(timeout_seconds);
  auto comm = muse::collective::ConnectGloo(g);
  if (!comm.ok()) return Fail(g.rank, comm.status());
  ro.tensor_parallel = comm->get();
  auto runner = muse::runtime::CreateModelRunner(ro);
  if (!runner.ok()) return Fail(g.rank, runner.status());
  const absl::Status st = (*runner)->ServeTensorParallelWorker();
  if (!st.ok()) return Fail(g.rank, st);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "muse-tp-worker: %s\n", e.what());
  return muse::cli::kExitFailure;
}
