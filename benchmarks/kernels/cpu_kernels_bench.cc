// CPU kernel lab (Google Benchmark). Each figure comes with the fraction of a peak measured in the
// same run: FMA throughput for compute-bound cases, streaming read bandwidth for weight-bound ones.
//
//   build/bin/cpu_kernels_bench [--benchmark_filter=...]
//
// Counters: GFLOPs (achieved), GBps (weight bytes read / time), and frac_peak.
#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "kernels/cpu/packed_gemm.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cpu/thread_pool.h"
#include "models/testing/presets.h"

#ifdef MUSE_BENCH_OPENBLAS
#include <cblas.h>
extern "C" void openblas_set_num_threads(int);
#endif

namespace muse::kernels::cpu {
namespace {

int Threads() {
  static const int n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return n;
}

ThreadPool& Pool() {
  static ThreadPool pool(Threads());
  return pool;
}

// FMA peak of all cores: 12 independent accumulator chains per thread (enough to hide latency),
// each started from a different value so the compiler cannot merge them.
__attribute__((target("avx2,fma"))) double FmaOneThread(int64_t iters, float seed) {
  const __m256 a = _mm256_set1_ps(0.9999999f), b = _mm256_set1_ps(1e-7f);
#define MUSE_INIT(i) _mm256_set1_ps(seed + 0.01f * i)
  __m256 c0 = MUSE_INIT(0), c1 = MUSE_INIT(1), c2 = MUSE_INIT(2), c3 = MUSE_INIT(3),
         c4 = MUSE_INIT(4), c5 = MUSE_INIT(5), c6 = MUSE_INIT(6), c7 = MUSE_INIT(7),
         c8 = MUSE_INIT(8), c9 = MUSE_INIT(9), c10 = MUSE_INIT(10), c11 = MUSE_INIT(11);
#undef MUSE_INIT
  for (int64_t i = 0; i < iters; ++i) {
    c0 = _mm256_fmadd_ps(a, c0, b);
    c1 = _mm256_fmadd_ps(a, c1, b);
    c2 = _mm256_fmadd_ps(a, c2, b);
    c3 = _mm256_fmadd_ps(a, c3, b);
    c4 = _mm256_fmadd_ps(a, c4, b);
    c5 = _mm256_fmadd_ps(a, c5, b);
    c6 = _mm256_fmadd_ps(a, c6, b);
    c7 = _mm256_fmadd_ps(a, c7, b);
    c8 = _mm256_fmadd_ps(a, c8, b);
    c9 = _mm256_fmadd_ps(a, c9, b);
    c10 = _mm256_fmadd_ps(a, c10, b);
    c11 = _mm256_fmadd_ps(a, c11, b);
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                           _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
  s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
  return _mm256_cvtss_f32(s);
}

double MeasuredFmaPeak() {
  static const double peak = [] {
    const int64_t iters = 50'000'000;
    double best = 0;
    for (int rep = 0; rep < 3; ++rep) {
      std::atomic<double> sink{0};
      const auto t0 = std::chrono::steady_clock::now();
      Pool().Run([&](int t) { sink.store(FmaOneThread(iters, 1.0f + t)); });
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::max(best, Pool().num_threads() * iters * 12.0 * 16 / s);
    }
    return best;
  }();
  return peak;
}

// Streaming read bandwidth over 512 MiB (far past the caches), all threads, best of 3.
__attribute__((target("avx2"))) float SumRange(const float* p, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
  }
  return _mm256_cvtss_f32(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

double MeasuredReadBandwidth() {
  static const double bw = [] {
    const int64_t n = (512ll << 20) / 4;
    float* p = static_cast<float*>(std::aligned_alloc(64, n * 4));
    std::fill(p, p + n, 1.0f);
    double best = 0;
    for (int rep = 0; rep < 3; ++rep) {
      std::atomic<float> sink{0};
      const auto t0 = std::chrono::steady_clock::now();
      Pool().ParallelFor(
          n / 32, [&](int64_t b, int64_t e) { sink.store(SumRange(p + b * 32, (e - b) * 32)); });
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::max(best, n * 4.0 / s);
    }
    std::free(p);
    return best;
  }();
  return bw;
}

void BM_MachinePeaks(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(MeasuredFmaPeak());
  state.counters["fma_peak_GFLOPs"] = MeasuredFmaPeak() / 1e9;
  state.counters["read_bw_GBps"] = MeasuredReadBandwidth() / 1e9;
  state.counters["threads"] = Threads();
}
BENCHMARK(BM_MachinePeaks)->Iterations(1)->Unit(benchmark::kMillisecond);

// The weights of the `small` preset (models/testing/presets.h), random: per layer the fused qkv, o,
// gate_up (SwiGLU-packed) and down matrices, then lm_head; ~400 MB of fp32, so each pass streams
// them from DRAM as decode does.
struct SmallModelWeights {
  std::vector<PackedWeight> w;
  std::vector<bool> swiglu;
  double bytes = 0, flops_per_row = 0;
  SmallModelWeights() {
    const models::ModelConfig c = *models::DecoderPreset("small");
    const int64_t H = c.hidden_size, I = c.intermediate_size;
    const int64_t qkv = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim;
    const int64_t q = c.num_attention_heads * c.head_dim;
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(-0.05f, 0.05f);
    auto rnd = [&](int64_t n) {
      std::vector<float> v(n);
      for (auto& x : v) x = u(rng);
      return v;
    };
    auto add = [&](int64_t n, int64_t k) {
      auto v = rnd(n * k);
      w.push_back(PackedWeight::Pack(v.data(), n, k));
      swiglu.push_back(false);
    };
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      add(qkv, H);
      add(H, q);
      auto g = rnd(I * H), up = rnd(I * H);
      w.push_back(PackSwiGlu(g.data(), up.data(), I, H));
      swiglu.push_back(true);
      add(H, I);
    }
    add(c.vocab_size, H);
    for (auto& x : w) {
      bytes += 4.0 * x.n() * x.k();
      flops_per_row += 2.0 * x.n() * x.k();
    }
  }
};

void BM_SmallModelGemmPass(benchmark::State& state) {
  static SmallModelWeights m;
  const int64_t rows = state.range(0);
  std::vector<float> x(rows * 4096, 0.01f), y(rows * 32000);  // covers every K and N of `small`
  for (auto _ : state) {
    for (size_t i = 0; i < m.w.size(); ++i) {
      const auto& w = m.w[i];
      GemmArgs a{x.data(), rows, w.k(), y.data(), m.swiglu[i] ? w.swiglu_intermediate() : w.n()};
      if (m.swiglu[i]) {
        PackedGemmSwiGlu(a, w, Pool());
      } else {
        PackedGemm(a, w, Pool());
      }
    }
    benchmark::ClobberMemory();
  }
  const double s = state.iterations();
  state.counters["GFLOPs"] =
      benchmark::Counter(m.flops_per_row * rows * s / 1e9, benchmark::Counter::kIsRate);
  state.counters["GBps"] = benchmark::Counter(m.bytes * s / 1e9, benchmark::Counter::kIsRate);
  state.counters["peak_GFLOPs"] = MeasuredFmaPeak() / 1e9;
  state.counters["peak_GBps"] = MeasuredReadBandwidth() / 1e9;
}
BENCHMARK(BM_SmallModelGemmPass)
    ->Arg(1)
    ->Arg(8)
    ->Arg(32)
    ->Arg(128)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// One GEMM shape, ours (packed) vs OpenBLAS sgemm (x W^T, W row-major as checkpoints store it).
struct Shape {
  int64_t m, n, k;
};
void GemmCounters(benchmark::State& state, const Shape& s) {
  const double f = 2.0 * s.m * s.n * s.k * state.iterations();
  state.counters["GFLOPs"] = benchmark::Counter(f / 1e9, benchmark::Counter::kIsRate);
  state.counters["frac_fma_peak"] =
      benchmark::Counter(f / MeasuredFmaPeak(), benchmark::Counter::kIsRate);
}

void BM_PackedGemm(benchmark::State& state) {
  const Shape s{state.range(0), state.range(1), state.range(2)};
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> w(s.n * s.k), x(s.m * s.k), y(s.m * s.n);
  for (auto& v : w) v = u(rng);
  for (auto& v : x) v = u(rng);
  const PackedWeight pw = PackedWeight::Pack(w.data(), s.n, s.k);
  for (auto _ : state) {
    PackedGemm({x.data(), s.m, s.k, y.data(), s.n}, pw, Pool());
    benchmark::ClobberMemory();
  }
  GemmCounters(state, s);
}

#ifdef MUSE_BENCH_OPENBLAS
void BM_OpenBlasSgemm(benchmark::State& state) {
  const Shape s{state.range(0), state.range(1), state.range(2)};
  openblas_set_num_threads(Threads());
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> w(s.n * s.k), x(s.m * s.k), y(s.m * s.n);
  for (auto& v : w) v = u(rng);
  for (auto& v : x) v = u(rng);
  for (auto _ : state) {
    if (s.m == 1) {
      cblas_sgemv(CblasRowMajor, CblasNoTrans, s.n, s.k, 1.f, w.data(), s.k, x.data(), 1, 0.f,
                  y.data(), 1);
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.m, s.n, s.k, 1.f, x.data(), s.k,
                  w.data(), s.k, 0.f, y.data(), s.n);
    }
    benchmark::ClobberMemory();
  }
  GemmCounters(state, s);
}
#endif

void GemmShapes(benchmark::internal::Benchmark* b) {
  for (int64_t m : {1, 8, 32, 128}) {
    for (auto [n, k] : std::vector<std::pair<int64_t, int64_t>>{
             {1280, 768}, {4096, 768}, {768, 2048}, {32000, 768}}) {
      b->Args({m, n, k});
    }
  }
  b->ArgNames({"m", "n", "k"})->Unit(benchmark::kMicrosecond)->UseRealTime();
}
BENCHMARK(BM_PackedGemm)->Apply(GemmShapes);
#ifdef MUSE_BENCH_OPENBLAS
BENCHMARK(BM_OpenBlasSgemm)->Apply(GemmShapes);
#endif

// Attention over one layer's caches with the `small` preset's heads (12 q / 4 KV, d = 64).
PagedAttentionArgs SmallHeadsArgs(const std::vector<float>& q, const std::vector<float>& k,
                                  const std::vector<float>& v, std::vector<float>& out,
                                  const std::vector<int32_t>& qsl, const std::vector<int32_t>& lens,
                                  const std::vector<int32_t>& blocks, int blocks_per_seq) {
  PagedAttentionArgs a;
  a.q = q.data();
  a.q_stride = 12 * 64;
  a.k_cache = k.data();
  a.v_cache = v.data();
  a.out = out.data();
  a.out_stride = 12 * 64;
  a.num_heads = 12;
  a.num_kv_heads = 4;
  a.head_dim = 64;
  a.scale = 0.125f;
  a.num_seqs = static_cast<int>(lens.size());
  a.query_start_loc = qsl.data();
  a.seq_lens = lens.data();
  a.block_tables = blocks.data();
  a.max_blocks_per_seq = blocks_per_seq;
  return a;
}

// Decode attention of the small preset's shape (12 query / 4 KV heads, d = 64) over a shuffled
// paged cache: bytes of K/V read per call ÷ measured read bandwidth.
void BM_PagedDecodeAttention(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0)), ctx = static_cast<int>(state.range(1));
  const int nH = 12, nKV = 4, D = 64, bs = 16;
  const int nb = (ctx + bs - 1) / bs, pool_blocks = batch * nb;
  std::vector<int32_t> blocks(pool_blocks);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::shuffle(blocks.begin(), blocks.end(), std::mt19937(3));
  const int64_t row = nKV * D;
  std::vector<float> k(static_cast<int64_t>(pool_blocks) * bs * row, 0.01f), v = k;
  std::vector<float> q(batch * nH * D, 0.02f), out(batch * nH * D);
  std::vector<int32_t> qsl(batch + 1), lens(batch, ctx);
  std::iota(qsl.begin(), qsl.end(), 0);
  const PagedAttentionArgs a = SmallHeadsArgs(q, k, v, out, qsl, lens, blocks, nb);
  for (auto _ : state) {
    PagedAttention(a, Pool());
    benchmark::ClobberMemory();
  }
  const double bytes = 2.0 * batch * ctx * row * 4 * state.iterations();
  state.counters["GBps"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsRate);
  state.counters["frac_read_bw"] =
      benchmark::Counter(bytes / MeasuredReadBandwidth(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_PagedDecodeAttention)
    ->ArgsProduct({{1, 32}, {128, 1024, 4096}})
    ->ArgNames({"batch", "ctx"})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// Prefill attention of one sequence (12 q / 4 KV heads, d = 64): L new tokens, causal, no cached
// context. FLOPs counted as 4 * heads * d * L * (L + 1) / 2 (QK and PV over the causal half).
void BM_PagedPrefillAttention(benchmark::State& state) {
  const int L = static_cast<int>(state.range(0));
  const int nH = 12, nKV = 4, D = 64, bs = 16;
  const int nb = (L + bs - 1) / bs;
  std::vector<int32_t> blocks(nb);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::shuffle(blocks.begin(), blocks.end(), std::mt19937(4));
  const int64_t row = nKV * D;
  std::vector<float> k(static_cast<int64_t>(nb) * bs * row, 0.01f), v = k;
  std::vector<float> q(static_cast<int64_t>(L) * nH * D, 0.02f), out(q.size());
  std::vector<int32_t> qsl = {0, L}, lens = {L};
  const PagedAttentionArgs a = SmallHeadsArgs(q, k, v, out, qsl, lens, blocks, nb);
  for (auto _ : state) {
    PagedAttention(a, Pool());
    benchmark::ClobberMemory();
  }
  const double f = 4.0 * nH * D * L * (L + 1.0) / 2 * state.iterations();
  state.counters["GFLOPs"] = benchmark::Counter(f / 1e9, benchmark::Counter::kIsRate);
  state.counters["frac_fma_peak"] =
      benchmark::Counter(f / MeasuredFmaPeak(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_PagedPrefillAttention)
    ->Arg(512)
    ->Arg(2048)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace muse::kernels::cpu

int main(int argc, char** argv) {
  if (!muse::kernels::cpu::PackedGemmSupported()) {
    std::fprintf(stderr, "this CPU has no AVX2 + FMA: the packed kernels do not run here\n");
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
