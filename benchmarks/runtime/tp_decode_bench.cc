// Tensor-parallel decode on the CPU kernels (issue 20): one decode step of `--batch` sequences at
// `--context` tokens each, on one rank with --threads threads vs --tp ranks (threads of this
// process, connected by Gloo over loopback TCP) with --threads / tp threads each, so both use the
// same cores. Prints per-step wall time (median of --steps) and, for the ranks, the time rank 0
// spends inside collectives (all-reduce + all-gather + the batch broadcast is not included: the
// ranks here get their batches directly). Results on stdout.
//
//   tp_decode_bench --preset small --batch 8 --context 128 --steps 20 --tp 2 --threads 2
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "models/checkpoint.h"
#include "models/llama/llama_cpu_model.h"
#include "models/testing/presets.h"
#include "models/testing/random_checkpoint.h"
#include "src/collective/gloo_communicator.h"
#include "src/common/cli.h"

namespace {

using namespace muse;
using Clock = std::chrono::steady_clock;

// Forwards to a Communicator and adds up the time spent in it.
class TimedCommunicator : public collective::Communicator {
 public:
  explicit TimedCommunicator(collective::Communicator* inner) : inner_(inner) {}
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  absl::Status AllReduceSum(float* d, int64_t n) override {
    return Time([&] { return inner_->AllReduceSum(d, n); });
  }
  absl::Status AllGather(const float* in, int64_t n, float* out) override {
    return Time([&] { return inner_->AllGather(in, n, out); });
  }
  absl::Status Broadcast(void* d, int64_t bytes, int root) override {
    return Time([&] { return inner_->Broadcast(d, bytes, root); });
  }
  absl::Status Barrier() override {
    return Time([&] { return inner_->Barrier(); });
  }
  double seconds = 0;
  int64_t calls = 0;

 private:
  template <typename F>
  absl::Status Time(F f) {
    const auto t0 = Clock::now();
    absl::Status st = f();
    seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    ++calls;
    return st;
  }
  collective::Communicator* inner_;
};

struct Caches {
  std::vector<std::vector<float>> k, v;
  std::vector<float*> kp, vp;
};

Caches MakeCaches(const models::ModelConfig& c, int64_t kv_heads, int64_t blocks) {
  Caches x;
  const int64_t n = blocks * kernels::kKvBlockSize * kv_heads * c.head_dim;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    x.k.emplace_back(n, 0.01f);
    x.v.emplace_back(n, 0.01f);
  }
  for (auto& a : x.k) x.kp.push_back(a.data());
  for (auto& a : x.v) x.vp.push_back(a.data());
  return x;
}

// `batch` sequences of `context` cached tokens each (contiguous blocks), one new token each.
models::Batch DecodeBatch(int batch, int context, int vocab) {
  models::Batch b;
  const int per_seq = (context + 1 + kernels::kKvBlockSize - 1) / kernels::kKvBlockSize;
  b.max_blocks_per_seq = per_seq;
  b.query_start_loc.push_back(0);
  for (int s = 0; s < batch; ++s) {
    b.input_ids.push_back(3 + (s * 101) % (vocab - 3));
    b.positions.push_back(context);
    b.slot_mapping.push_back(static_cast<int64_t>(s * per_seq) * kernels::kKvBlockSize + context);
    b.query_start_loc.push_back(s + 1);
    b.seq_lens.push_back(context + 1);
    for (int j = 0; j < per_seq; ++j) b.block_tables.push_back(s * per_seq + j);
    b.logits_indices.push_back(s);
  }
  return b;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::string preset = "small";
  int batch = 8, context = 128, steps = 20, tp = 2, threads = 2;
  CLI::App app("Tensor-parallel CPU decode step vs one rank.", "tp_decode_bench");
  cli::ConfigureApp(app);
  app.add_option("--preset", preset, "decoder preset")->capture_default_str();
  app.add_option("--batch", batch, "sequences per step")->capture_default_str();
  app.add_option("--context", context, "cached tokens per sequence")->capture_default_str();
  app.add_option("--steps", steps, "measured steps")->capture_default_str();
  app.add_option("--tp", tp, "ranks")->check(CLI::Range(2, 64))->capture_default_str();
  app.add_option("--threads", threads, "CPU threads in all")->capture_default_str();
  if (auto rc = cli::ParseCommandLine(app, argc, argv)) return *rc;

  auto cfg = models::DecoderPreset(preset);
  if (!cfg.ok()) {
    std::fprintf(stderr, "%s\n", cfg.status().ToString().c_str());
    return 1;
  }
  char tmpl[] = "/tmp/tp-bench-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  if (!models::WriteRandomCheckpoint(dir, *cfg, {.seed = 1}).ok()) return 1;
  auto ck = models::Checkpoint::Open(dir);
  if (!ck.ok()) return 1;
  const models::ModelConfig& c = *cfg;
  const int64_t blocks = static_cast<int64_t>(batch) *
                         ((context + 1 + kernels::kKvBlockSize - 1) / kernels::kKvBlockSize);
  const models::Batch b = DecodeBatch(batch, context, static_cast<int>(c.vocab_size));
  std::vector<float> logits(batch * c.vocab_size);

  // One rank, all threads.
  std::vector<double> one;
  {
    auto m = models::LlamaCpuModel::Load(**ck, "", threads);
    if (!m.ok()) return 1;
    Caches kv = MakeCaches(c, c.num_key_value_heads, blocks);
    for (int i = 0; i < steps + 3; ++i) {
      const auto t0 = Clock::now();
      if (!(*m)->Forward(b, kv.kp, kv.vp, logits.data()).ok()) return 1;
      if (i >= 3) one.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    }
  }
  // tp ranks, threads / tp each.
  std::vector<double> many;
  double comm_seconds = 0;
  int64_t comm_calls = 0;
  {
    const std::string store = dir + "/store";
    std::vector<std::thread> ranks;
    for (int r = 0; r < tp; ++r) {
      ranks.emplace_back([&, r] {
        collective::GlooOptions o{.rank = r, .size = tp, .store_dir = store};
        auto comm = collective::ConnectGloo(o);
        if (!comm.ok()) std::abort();
        TimedCommunicator timed(comm->get());
        auto m = models::LlamaCpuModel::Load(**ck, "", std::max(1, threads / tp), &timed);
        if (!m.ok()) std::abort();
        Caches kv = MakeCaches(c, (*m)->num_local_kv_heads(), blocks);
        std::vector<float> out(batch * c.vocab_size);
        for (int i = 0; i < steps + 3; ++i) {
          if (i == 3) timed.seconds = 0, timed.calls = 0;
          const auto t0 = Clock::now();
          if (!(*m)->Forward(b, kv.kp, kv.vp, out.data()).ok()) std::abort();
          if (r == 0 && i >= 3)
            many.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
        }
        if (r == 0) comm_seconds = timed.seconds, comm_calls = timed.calls;
      });
    }
    for (auto& t : ranks) t.join();
  }
  const double a = Median(one) * 1e3, m = Median(many) * 1e3;
  const double per_step_comm = comm_seconds / steps * 1e3;
  const double bytes_per_step = (2.0 * c.num_hidden_layers * batch * c.hidden_size +
                                 tp * batch * ((c.vocab_size + tp - 1) / tp)) *
                                4;
  std::printf("preset %s, batch %d, context %d, %d threads in all, median of %d steps\n",
              preset.c_str(), batch, context, threads, steps);
  std::printf("1 rank  x %d threads: %.2f ms/step\n", threads, a);
  std::printf(
      "%d ranks x %d threads: %.2f ms/step (%.2fx of one rank); rank 0 in collectives "
      "%.2f ms/step over %.0f calls (%.1f KiB moved per rank per step)\n",
      tp, std::max(1, threads / tp), m, m / a, per_step_comm,
      static_cast<double>(comm_calls) / steps, bytes_per_step / 1024);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return 0;
}
