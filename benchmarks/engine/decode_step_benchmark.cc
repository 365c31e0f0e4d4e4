// End-to-end CPU decode step, before and after the batched host sampler (issue 14): batch 32 on
// the `small` preset (32k vocabulary) and on the same shape with a 128k vocabulary (random fp32
// weights, written here). One step = the runner's Forward for 32 decode tokens (context 128 each)
// + sampling the 32 logits rows. "before" samples row by row with the previous sampler
// (tests/engine/reference_sampler.cc, one thread, as the engine did); "after" with
// Sampler::SampleBatch on the engine's sampling pool. Same logits, same run; markdown to stdout.
// The last mode gives every row a structured-output bitmask (issue #17) allowing 1 token in 8:
// the sampler's cost of a constrained row (a masked copy into scratch; the mask itself is computed
// during the forward pass and is not timed here).
//
//   decode_step_benchmark [--threads N (default: 2)] [--reps R (default 5)] [--dir DIR]
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "models/testing/presets.h"
#include "models/testing/random_checkpoint.h"
#include "src/common/cli.h"
#include "src/common/logging.h"
#include "src/engine/sampler.h"
#include "src/runtime/model_runner.h"
#include "tests/engine/reference_sampler.h"

namespace {

using muse::kernels::kKvBlockSize;
using muse::models::Batch;
using Clock = std::chrono::steady_clock;

constexpr int kBatch = 32;
constexpr int kContext = 128;

template <typename F>
double MeanMs(int reps, F&& f) {
  f();  // warm up
  const auto t0 = Clock::now();
  for (int i = 0; i < reps; ++i) f();
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / reps;
}

// Prefills kBatch sequences of kContext tokens; returns the decode batch after them.
absl::StatusOr<Batch> Prefill(muse::runtime::ModelRunner& r, int vocab) {
  const int blocks_per_seq = (kContext + 16 + kKvBlockSize - 1) / kKvBlockSize;
  Batch decode;
  decode.max_blocks_per_seq = blocks_per_seq;
  decode.query_start_loc.push_back(0);
  for (int s = 0; s < kBatch; ++s) {
    Batch pre;
    pre.max_blocks_per_seq = blocks_per_seq;
    pre.query_start_loc = {0, kContext};
    pre.seq_lens = {kContext};
    for (int j = 0; j < blocks_per_seq; ++j) pre.block_tables.push_back(s * blocks_per_seq + j);
    for (int p = 0; p < kContext; ++p) {
      pre.input_ids.push_back(3 + (p * 7919 + s * 104729) % (vocab - 3));
      pre.positions.push_back(p);
      pre.slot_mapping.push_back(static_cast<int64_t>(s * blocks_per_seq + p / kKvBlockSize) *
                                     kKvBlockSize +
                                 p % kKvBlockSize);
    }
    pre.logits_indices = {kContext - 1};
    muse::models::Logits l;
    RETURN_IF_ERROR(r.Forward(pre, &l));
    decode.input_ids.push_back(3 + s);
    decode.positions.push_back(kContext);
    decode.slot_mapping.push_back(
        static_cast<int64_t>(s * blocks_per_seq + kContext / kKvBlockSize) * kKvBlockSize +
        kContext % kKvBlockSize);
    decode.logits_indices.push_back(s);
    decode.query_start_loc.push_back(s + 1);
    decode.seq_lens.push_back(kContext + 1);
    for (int j = 0; j < blocks_per_seq; ++j) decode.block_tables.push_back(s * blocks_per_seq + j);
  }
  return decode;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, reps = 5;
  std::string dir = "/tmp/muse-decode-step";
  CLI::App app("Batch-32 CPU decode step time, previous vs batched host sampler.",
               "decode_step_benchmark");
  muse::cli::ConfigureApp(app);
  app.add_option("--threads", threads, "runner and sampling threads")->check(muse::cli::AtLeast(1));
  app.add_option("--reps", reps, "timed repetitions per figure")->check(muse::cli::AtLeast(1));
  app.add_option("--dir", dir, "where the two random checkpoints are written (reused)");
  if (auto rc = muse::cli::ParseCommandLine(app, argc, argv)) return *rc;
  muse::InitLogging("warn");

  std::printf("batch %d, context %d, %d threads, fp32 CPU runner (muse kernels)\n\n", kBatch,
              kContext, threads);
  std::printf(
      "| vocab | sampling | forward ms | sample before ms | sample after ms | step before ms | "
      "step after ms | step speed-up |\n|---|---|---|---|---|---|---|---|\n");
  for (const int vocab : {32000, 128256}) {
    auto preset = muse::models::DecoderPreset("small");
    if (!preset.ok()) return 1;
    muse::models::ModelConfig c = *preset;
    c.vocab_size = vocab;
    const std::string d = dir + "-" + std::to_string(vocab);
    if (!std::filesystem::exists(d + "/model.safetensors")) {
      auto w = muse::models::WriteRandomCheckpoint(d, c, {.seed = 1});
      if (!w.ok()) {
        std::fprintf(stderr, "write %s: %s\n", d.c_str(), w.status().ToString().c_str());
        return 1;
      }
    }
    muse::runtime::RunnerOptions o;
    o.model_dir = d;
    o.device = "cpu";
    o.num_threads = threads;
    o.num_kv_blocks = kBatch * ((kContext + 16 + kKvBlockSize - 1) / kKvBlockSize);
    auto r = muse::runtime::CreateModelRunner(o);
    if (!r.ok()) {
      std::fprintf(stderr, "runner: %s\n", r.status().ToString().c_str());
      return 1;
    }
    auto decode = Prefill(**r, vocab);
    if (!decode.ok()) {
      std::fprintf(stderr, "prefill: %s\n", decode.status().ToString().c_str());
      return 1;
    }
    muse::models::Logits logits;
    bool ok = true;
    // The decode step rewrites the same KV slot each time: same work every repetition.
    const double forward_ms =
        MeanMs(reps, [&] { ok = ok && (*r)->Forward(*decode, &logits).ok(); });
    if (!ok || logits.num_rows != kBatch) {
      std::fprintf(stderr, "decode forward failed\n");
      return 1;
    }
    std::vector<int32_t> history(kContext);
    for (int p = 0; p < kContext; ++p) history[p] = 3 + p;
    const std::vector<int64_t> eos{2};
    muse::kernels::cpu::ThreadPool pool(threads);
    muse::engine::Sampler sampler(vocab);
    muse::engine::testing::ReferenceSampler reference(vocab);
    const char* names[] = {"greedy", "temperature 0.8", "temp 0.8 + top-k 50 + top-p 0.9",
                           "temperature 0.8 + bitmask (1 in 8 allowed)"};
    std::vector<uint32_t> mask((vocab + 31) / 32, 0x01010101u);
    for (int mode = 0; mode < 4; ++mode) {
      muse::engine::SamplingParams p;
      p.temperature = mode == 0 ? 0.0f : 0.8f;
      if (mode == 2) {
        p.top_k = 50;
        p.top_p = 0.9f;
      }
      std::vector<muse::engine::SamplingRow> rows;
      for (int s = 0; s < kBatch; ++s) {
        rows.push_back(
            {logits.row(s), &p, &history, kContext, 7, s, &eos, mode == 3 ? mask.data() : nullptr});
      }
      std::vector<muse::engine::SampleResult> results(kBatch);
      const double after = MeanMs(reps * 4, [&] { sampler.SampleBatch(rows, results, &pool); });
      int32_t sink = 0;
      const double before = MeanMs(reps * 4, [&] {
        for (const auto& row : rows) sink += reference.Sample(row).token_id;
      });
      std::printf("| %d | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.3fx |\n", vocab, names[mode],
                  forward_ms, before, after, forward_ms + before, forward_ms + after,
                  (forward_ms + before) / (forward_ms + after));
      if (sink == -1) std::printf("\n");  // keeps the reference's results alive
    }
  }
  return 0;
}
