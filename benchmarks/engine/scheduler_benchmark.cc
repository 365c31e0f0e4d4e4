// Engine-side cost of one step without a model: schedule -> build the runner Batch -> advance KV
// and publish full blocks -> append a token. Reported per step (and per sequence) so it can be
// set against the model's step time: the engine must never be the bottleneck.
//
//   build-engine/bin/engine_benchmark --benchmark_filter=Step
//   build-engine/bin/engine_benchmark --benchmark_filter='Sample|ReadLogits'
//   build/bin/engine_benchmark --benchmark_filter=SampleMasked
#include <benchmark/benchmark.h>

#include <memory>
#include <numeric>
#include <random>

#include "kernels/cpu/thread_pool.h"
#include "src/engine/batch_builder.h"
#include "src/engine/sampler.h"
#include "src/engine/scheduler.h"
#include "tests/engine/reference_sampler.h"

namespace muse::engine {
namespace {

// Steady decode with turnover: `num_seqs` running sequences; each finishes after `gen` tokens
// and is replaced by a new prompt that shares a 64-token system prefix (prefix-cache hits).
void BM_SchedulerStep(benchmark::State& state) {
  const int num_seqs = static_cast<int>(state.range(0));
  const int prompt = 512, gen = 256;
  SchedulerConfig config{.max_num_batched_tokens = 8192, .max_num_seqs = num_seqs};
  BlockManager blocks(num_seqs * ((prompt + gen) / kernels::kKvBlockSize + 2));
  Scheduler sched(config, &blocks);
  std::mt19937 rng(1);
  std::vector<std::unique_ptr<Sequence>> seqs;
  int64_t next_id = 0;
  auto fresh = [&](Sequence* s) {
    s->id = next_id++;
    s->tokens.resize(prompt);
    std::iota(s->tokens.begin(), s->tokens.begin() + 64, 1000);  // shared system prompt
    for (int i = 64; i < prompt; ++i) s->tokens[i] = static_cast<int32_t>(rng() % 32000);
    s->num_prompt_tokens = prompt;
    s->num_computed_tokens = 0;
    s->num_cached_blocks = 0;
    s->block_hashes.clear();
    s->priority_key = s->id;
    sched.AddWaiting(s);
  };
  for (int i = 0; i < num_seqs; ++i) {
    seqs.push_back(std::make_unique<Sequence>());
    fresh(seqs.back().get());
  }
  models::Batch batch;
  std::vector<int> logits_seq;
  const std::vector<ContentSpan> none;
  int64_t scheduled_seqs = 0;
  for (auto _ : state) {
    SchedulerOutput out = sched.Schedule();
    BuildBatch(out.scheduled, &batch, &logits_seq);
    for (const auto& s : out.scheduled) {
      Sequence* seq = s.seq;
      seq->num_computed_tokens += s.num_new_tokens;
      const int full = seq->num_computed_tokens / kernels::kKvBlockSize;
      if (full > seq->num_cached_blocks) {
        ExtendBlockHashes(seq->tokens, none, &seq->block_hashes);
        for (int b = seq->num_cached_blocks; b < full; ++b) {
          blocks.Cache(seq->block_table[b],
                       MakeBlockKey(seq->tokens, b, b ? seq->block_hashes[b - 1] : 0, none),
                       seq->block_hashes[b]);
        }
        seq->num_cached_blocks = full;
      }
    }
    for (int i : logits_seq) {
      Sequence* seq = out.scheduled[i].seq;
      seq->tokens.push_back(static_cast<int32_t>(rng() % 32000));
      if (seq->num_generated() >= gen) {
        sched.Remove(seq);
        fresh(seq);
      }
    }
    scheduled_seqs += static_cast<int64_t>(out.scheduled.size());
    benchmark::DoNotOptimize(batch.input_ids.data());
  }
  state.counters["seqs_per_step"] =
      benchmark::Counter(static_cast<double>(scheduled_seqs) / state.iterations());
}
BENCHMARK(BM_SchedulerStep)->Arg(64)->Arg(256)->Arg(1024)->Unit(benchmark::kMicrosecond);

// Host sampling over a decode step: 256 logits rows of a 128k vocabulary (N(0, 3) logits).
// mode 0 greedy, 1 temperature 0.8, 2 temperature 0.8 + top-k 50 + top-p 0.9.
// BM_SampleStep: Sampler::SampleBatch on `threads` threads (the engine's path);
// BM_SampleStepReference: the previous sampler, row by row on one thread (tests/engine);
// BM_ReadLogits: one streaming read (a sum) of the same floats on `threads` threads, the
// memory-speed floor the sampler is measured against.
constexpr int kVocab = 128256;

const std::vector<float>& BenchLogits(int rows) {
  static std::vector<float> logits;
  if (logits.size() != static_cast<size_t>(rows) * kVocab) {
    logits.resize(static_cast<size_t>(rows) * kVocab);
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    for (auto& l : logits) l = nd(rng);
  }
  return logits;
}

SamplingParams BenchParams(int mode) {
  SamplingParams p;
  p.temperature = mode == 0 ? 0.0f : 0.8f;
  if (mode == 2) {
    p.top_p = 0.9f;
    p.top_k = 50;
  }
  return p;
}

void BM_SampleStep(benchmark::State& state) {
  const int rows = static_cast<int>(state.range(0));
  const SamplingParams p = BenchParams(static_cast<int>(state.range(1)));
  const int threads = static_cast<int>(state.range(2));
  const std::vector<float>& logits = BenchLogits(rows);
  std::vector<int32_t> tokens(600, 5);
  std::vector<int64_t> eos{2};
  std::vector<SamplingRow> batch;
  batch.reserve(rows);
  for (int r = 0; r < rows; ++r) {
    batch.push_back(
        SamplingRow{logits.data() + static_cast<size_t>(r) * kVocab, &p, &tokens, 512, 7, r, &eos});
  }
  std::vector<SampleResult> results(rows);
  kernels::cpu::ThreadPool pool(threads);
  Sampler sampler(kVocab);
  for (auto _ : state) {
    sampler.SampleBatch(batch, results, &pool);
    benchmark::DoNotOptimize(results.data());
  }
  state.SetItemsProcessed(state.iterations() * rows);
}
BENCHMARK(BM_SampleStep)
    ->Args({256, 0, 2})
    ->Args({256, 1, 2})
    ->Args({256, 2, 2})
    ->Args({256, 0, 1})
    ->Args({256, 1, 1})
    ->Args({256, 2, 1})
    ->ArgNames({"rows", "mode", "threads"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Structured output's rows (issue #17): 16 rows (a serving step) at temperature 1 with a grammar
// bitmask allowing `allowed` random tokens (0: no bitmask, the unconstrained cost), one thread,
// CPU time. A JSON position outside strings allows a few to a few hundred tokens; a position
// inside a string allows most of the vocabulary.
void BM_SampleMasked(benchmark::State& state) {
  const int rows = 16;
  const int allowed = static_cast<int>(state.range(0));
  const std::vector<float>& logits = BenchLogits(rows);
  SamplingParams p;
  p.temperature = 1.0f;
  std::vector<int32_t> tokens(600, 5);
  std::vector<int64_t> eos{2};
  std::vector<std::vector<uint32_t>> masks(rows);
  std::mt19937 rng(11);
  std::vector<SamplingRow> batch;
  for (int r = 0; r < rows; ++r) {
    masks[r].assign((kVocab + 31) / 32, allowed >= kVocab ? ~uint32_t{0} : 0);
    for (int i = 0; i < allowed && allowed < kVocab; ++i) {
      const int t = std::uniform_int_distribution<int>(0, kVocab - 1)(rng);
      masks[r][t / 32] |= uint32_t{1} << (t % 32);
    }
    batch.push_back(SamplingRow{logits.data() + static_cast<size_t>(r) * kVocab, &p, &tokens, 512,
                                7, r, &eos, allowed == 0 ? nullptr : masks[r].data()});
  }
  std::vector<SampleResult> results(rows);
  Sampler sampler(kVocab);
  for (auto _ : state) {
    sampler.SampleBatch(batch, results, nullptr);
    benchmark::DoNotOptimize(results.data());
  }
  state.SetItemsProcessed(state.iterations() * rows);
}
BENCHMARK(BM_SampleMasked)
    ->Arg(0)
    ->Arg(8)
    ->Arg(300)
    ->Arg(4000)
    ->Arg(64000)
    ->Arg(kVocab)
    ->ArgNames({"allowed"})
    ->Unit(benchmark::kMicrosecond);

void BM_SampleStepReference(benchmark::State& state) {
  const int rows = static_cast<int>(state.range(0));
  const SamplingParams p = BenchParams(static_cast<int>(state.range(1)));
  const std::vector<float>& logits = BenchLogits(rows);
  std::vector<int32_t> tokens(600, 5);
  std::vector<int64_t> eos{2};
  testing::ReferenceSampler sampler(kVocab);
  for (auto _ : state) {
    for (int r = 0; r < rows; ++r) {
      SamplingRow row{
          logits.data() + static_cast<size_t>(r) * kVocab, &p, &tokens, 512, 7, r, &eos};
      benchmark::DoNotOptimize(sampler.Sample(row).token_id);
    }
  }
  state.SetItemsProcessed(state.iterations() * rows);
}
BENCHMARK(BM_SampleStepReference)
    ->Args({256, 0})
    ->Args({256, 1})
    ->Args({256, 2})
    ->ArgNames({"rows", "mode"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_ReadLogits(benchmark::State& state) {
  const int rows = static_cast<int>(state.range(0));
  const int threads = static_cast<int>(state.range(1));
  const std::vector<float>& logits = BenchLogits(rows);
  kernels::cpu::ThreadPool pool(threads);
  std::vector<float> sums(threads);
  for (auto _ : state) {
    pool.Run([&](int t) {
      const size_t n = logits.size(), begin = n * t / threads, end = n * (t + 1) / threads;
      float acc[16] = {};
      size_t i = begin;
      for (; i + 16 <= end; i += 16) {
        for (int j = 0; j < 16; ++j) acc[j] += logits[i + j];
      }
      float s = 0;
      for (float a : acc) s += a;
      for (; i < end; ++i) s += logits[i];
      sums[t] = s;
    });
    benchmark::DoNotOptimize(sums.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(logits.size()) * 4);
}
BENCHMARK(BM_ReadLogits)
    ->Args({256, 2})
    ->Args({256, 1})
    ->ArgNames({"rows", "threads"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace muse::engine

BENCHMARK_MAIN();
