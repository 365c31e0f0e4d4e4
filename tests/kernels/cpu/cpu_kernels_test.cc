// muse's fp32 CPU kernels (src/runtime/cpu) against plain double-precision loops: odd sizes,
// random data, poisoned outputs, 1 and 3 threads, shuffled block tables.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/packed_gemm.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cpu/thread_pool.h"

namespace muse::kernels::cpu {
namespace {

constexpr float kPoison = 12345.0f;

std::vector<float> Random(int64_t n, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

#define REQUIRE_AVX2() \
  if (!PackedGemmSupported()) GTEST_SKIP() << "CPU has no AVX2 + FMA"

TEST(ThreadPool, ParallelForCoversEveryIndexOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (int64_t n : {0, 1, 2, 7, 100, 1001}) {
      for (int rep = 0; rep < 200; ++rep) {  // many back-to-back jobs: spin/sleep hand-offs
        std::vector<std::atomic<int>> hits(n);
        pool.ParallelFor(n, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << n << " " << i;
        std::vector<std::atomic<int>> dyn(n);
        pool.ParallelForDynamic(n, [&](int64_t i) { dyn[i].fetch_add(1); });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(dyn[i].load(), 1);
      }
    }
  }
}

TEST(ThreadPool, WakesUpAfterSleeping) {
  ThreadPool pool(3);
  for (int rep = 0; rep < 3; ++rep) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // past the spin window
    std::atomic<int> ran{0};
    pool.Run([&](int) { ran.fetch_add(1); });
    EXPECT_EQ(ran.load(), 3);
  }
}

TEST(ThreadPool, CallerExceptionIsRethrownAfterTheWorkersFinish) {
  ThreadPool pool(3);
  std::atomic<int> workers_done{0};
  EXPECT_THROW(pool.Run([&](int i) {
                 if (i == 0) throw std::runtime_error("boom");
                 std::this_thread::sleep_for(std::chrono::milliseconds(5));
                 workers_done.fetch_add(1);
               }),
               std::runtime_error);
  EXPECT_EQ(workers_done.load(), 2);  // Run waited for them before rethrowing
  std::atomic<int> ran{0};
  pool.Run([&](int) { ran.fetch_add(1); });  // and the pool still works
  EXPECT_EQ(ran.load(), 3);
}

TEST(ThreadPool, AvailableCpusIsPositive) { EXPECT_GE(AvailableCpus(), 1); }

struct GemmCase {
  int64_t m, n, k;
};

class PackedGemmTest : public ::testing::TestWithParam<GemmCase> {};

TEST_P(PackedGemmTest, MatchesDoubleReference) {
  REQUIRE_AVX2();
  const auto [m, n, k] = GetParam();
  std::mt19937 rng(static_cast<uint32_t>(m * 1000003 + n * 1009 + k));
  const auto w = Random(n * k, rng), bias = Random(n, rng);
  const int64_t ldx = k + 3, ldy = n + 5;  // strided rows
  const auto x = Random(m * ldx, rng);
  const auto y0 = Random(m * ldy, rng);
  const PackedWeight pw = PackedWeight::Pack(w.data(), n, k);
  for (int threads : {1, 3}) {
    ThreadPool pool(threads);
    for (int variant = 0; variant < 3; ++variant) {  // plain, + bias, accumulate
      std::vector<float> y = y0;
      if (variant < 2) {
        for (int64_t r = 0; r < m; ++r) std::fill_n(y.begin() + r * ldy, n, kPoison);
      }
      GemmArgs a{x.data(), m, ldx, y.data(), ldy};
      a.bias = variant == 1 ? bias.data() : nullptr;
      a.accumulate = variant == 2;
      PackedGemm(a, pw, pool);
      for (int64_t r = 0; r < m; ++r) {
        for (int64_t j = 0; j < n; ++j) {
          double ref = variant == 2 ? y0[r * ldy + j] : 0.0, mag = std::fabs(ref);
          if (variant == 1) ref += bias[j];
          for (int64_t i = 0; i < k; ++i) {
            ref += static_cast<double>(x[r * ldx + i]) * w[j * k + i];
            mag += std::fabs(static_cast<double>(x[r * ldx + i]) * w[j * k + i]);
          }
          ASSERT_NEAR(y[r * ldy + j], ref, 1e-6 * mag + 1e-6)
              << "m=" << m << " n=" << n << " k=" << k << " row " << r << " col " << j
              << " variant " << variant << " threads " << threads;
        }
        // Padding columns beyond n are untouched.
        for (int64_t j = n; j < ldy; ++j) ASSERT_EQ(y[r * ldy + j], y0[r * ldy + j]);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, PackedGemmTest,
    ::testing::Values(GemmCase{1, 1, 1}, GemmCase{1, 769, 257}, GemmCase{2, 17, 7},
                      GemmCase{5, 16, 256}, GemmCase{7, 15, 513}, GemmCase{13, 33, 769},
                      GemmCase{32, 100, 300}, GemmCase{83, 47, 129}, GemmCase{6, 64, 1},
                      GemmCase{200, 31, 65}));

TEST(PackedGemm, SwiGluMatchesReference) {
  REQUIRE_AVX2();
  for (auto [m, inter, k] : std::vector<GemmCase>{{1, 16, 33}, {7, 172, 64}, {33, 61, 257}}) {
    std::mt19937 rng(static_cast<uint32_t>(inter));
    const auto gate = Random(inter * k, rng), up = Random(inter * k, rng), x = Random(m * k, rng);
    const PackedWeight pw = PackSwiGlu(gate.data(), up.data(), inter, k);
    EXPECT_EQ(pw.swiglu_intermediate(), inter);
    ThreadPool pool(3);
    std::vector<float> y(m * inter, kPoison);
    PackedGemmSwiGlu({x.data(), m, k, y.data(), inter}, pw, pool);
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t j = 0; j < inter; ++j) {
        double g = 0, u = 0;
        for (int64_t i = 0; i < k; ++i) {
          g += static_cast<double>(x[r * k + i]) * gate[j * k + i];
          u += static_cast<double>(x[r * k + i]) * up[j * k + i];
        }
        const double ref = g / (1 + std::exp(-g)) * u;
        ASSERT_NEAR(y[r * inter + j], ref, 1e-5 * (1 + std::fabs(ref))) << r << " " << j;
      }
    }
  }
}

TEST(PackedGemm, CopyRowReturnsTheOriginalRow) {
  std::mt19937 rng(3);
  const int64_t n = 37, k = 19;
  const auto w = Random(n * k, rng);
  const PackedWeight pw = PackedWeight::Pack(w.data(), n, k);
  std::vector<float> row(k);
  for (int64_t r = 0; r < n; ++r) {
    pw.CopyRow(r, row.data());
    for (int64_t i = 0; i < k; ++i) ASSERT_EQ(row[i], w[r * k + i]);
  }
}

TEST(CpuOps, RmsNormAndRopeMatchReference) {
  REQUIRE_AVX2();
  ThreadPool pool(3);
  for (int64_t rows : {1, 7, 83}) {
    for (int64_t n : {16, 769}) {
      std::mt19937 rng(static_cast<uint32_t>(rows * n));
      const auto x = Random(rows * n, rng), w = Random(n, rng, 0.5f, 1.5f);
      std::vector<float> y(rows * n, kPoison);
      RmsNorm(x.data(), n, w.data(), rows, n, 1e-5f, y.data(), n, pool);
      for (int64_t r = 0; r < rows; ++r) {
        double ss = 0;
        for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[r * n + i]) * x[r * n + i];
        const double inv = 1.0 / std::sqrt(ss / n + 1e-5);
        for (int64_t i = 0; i < n; ++i) {
          const double ref = w[i] * x[r * n + i] * inv;
          ASSERT_NEAR(y[r * n + i], ref, 2e-6 * (1 + std::fabs(ref)));
        }
      }
    }
    for (int64_t d : {16, 80, 128, 6}) {
      const int64_t heads = 5, ld = heads * d + 9;
      std::mt19937 rng(static_cast<uint32_t>(rows + d));
      const auto x0 = Random(rows * ld, rng);
      const auto ang = Random(rows * d / 2, rng, -30.0f, 30.0f);
      std::vector<float> cos(ang.size()), sin(ang.size());
      for (size_t i = 0; i < ang.size(); ++i) cos[i] = std::cos(ang[i]), sin[i] = std::sin(ang[i]);
      std::vector<float> x = x0;
      ApplyRope(x.data(), ld, rows, heads, d, cos.data(), sin.data(), pool);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t h = 0; h < heads; ++h) {
          for (int64_t i = 0; i < d / 2; ++i) {
            const double a = x0[r * ld + h * d + i], b = x0[r * ld + h * d + d / 2 + i];
            const double c = cos[r * d / 2 + i], s = sin[r * d / 2 + i];
            ASSERT_NEAR(x[r * ld + h * d + i], a * c - b * s, 1e-6);
            ASSERT_NEAR(x[r * ld + h * d + d / 2 + i], b * c + a * s, 1e-6);
          }
        }
        for (int64_t j = heads * d; j < ld; ++j) ASSERT_EQ(x[r * ld + j], x0[r * ld + j]);
      }
    }
  }
}

struct AttnCase {
  int heads, kv_heads, head_dim, window;
};

struct S { int cached, q; };

// Runs PagedAttention over `seqs` (cached context + new tokens each), blocks shuffled through the
// pool, with 1 and 3 threads, against a dense double softmax(q k^T * scale) v per sequence.
void CheckAgainstDense(const AttnCase& c, const std::vector<S>& seqs) {
  const auto [nH, nKV, D, window] = c;
  const int bs = 16;
  std::mt19937 rng(static_cast<uint32_t>(nH * 100 + D + window + seqs.size()));
  int max_blocks = 0, total_blocks = 0, T = 0;
  for (auto s : seqs) {
    const int nb = (s.cached + s.q + bs - 1) / bs;
    max_blocks = std::max(max_blocks, nb);
    total_blocks += nb;
    T += s.q;
  }
  const int pool_blocks = total_blocks + 5;
  std::vector<int32_t> free(pool_blocks);
  std::iota(free.begin(), free.end(), 0);
  std::shuffle(free.begin(), free.end(), rng);
  const int64_t row = static_cast<int64_t>(nKV) * D;
  const auto k_cache = Random(pool_blocks * bs * row, rng, -2.0f, 2.0f);
  const auto v_cache = Random(pool_blocks * bs * row, rng);
  const int64_t q_stride = static_cast<int64_t>(nH) * D + 11;
  const auto q = Random(T * q_stride, rng, -2.0f, 2.0f);
  std::vector<int32_t> qsl{0}, lens, tables;
  for (auto s : seqs) {
    qsl.push_back(qsl.back() + s.q);
    lens.push_back(s.cached + s.q);
    const int nb = (s.cached + s.q + bs - 1) / bs;
    for (int j = 0; j < max_blocks; ++j) {
      if (j < nb) {
        tables.push_back(free.back());
        free.pop_back();
      } else {
        tables.push_back(-1);
      }
    }
  }
  const int64_t out_stride = static_cast<int64_t>(nH) * D + 4;
  PagedAttentionArgs a;
  a.q = q.data();
  a.q_stride = q_stride;
  a.k_cache = k_cache.data();
  a.v_cache = v_cache.data();
  a.out_stride = out_stride;
  a.num_heads = nH;
  a.num_kv_heads = nKV;
  a.head_dim = D;
  a.block_size = bs;
  a.scale = 1.0f / std::sqrt(static_cast<float>(D));
  a.sliding_window = window;
  a.num_seqs = static_cast<int>(seqs.size());
  a.query_start_loc = qsl.data();
  a.seq_lens = lens.data();
  a.block_tables = tables.data();
  a.max_blocks_per_seq = max_blocks;
  for (int threads : {1, 3}) {
    ThreadPool pool(threads);
    std::vector<float> out(T * out_stride, kPoison);
    a.out = out.data();
    PagedAttention(a, pool);
    for (size_t s = 0; s < seqs.size(); ++s) {
      const int len = lens[s];
      auto kv = [&](const std::vector<float>& cache, int c, int h, int d) {
        const int blk = tables[s * max_blocks + c / bs];
        return static_cast<double>(cache[(static_cast<int64_t>(blk) * bs + c % bs) * row + h * D + d]);
      };
      for (int j = 0; j < seqs[s].q; ++j) {
        const int t = qsl[s] + j, qi = len - seqs[s].q + j;
        for (int h = 0; h < nH; ++h) {
          const int kvh = h / (nH / nKV);
          std::vector<double> p;
          std::vector<int> keys;
          for (int c = 0; c <= qi; ++c) {
            if (window > 0 && c <= qi - window) continue;
            double dot = 0;
            for (int d = 0; d < D; ++d) dot += q[t * q_stride + h * D + d] * kv(k_cache, c, kvh, d);
            p.push_back(dot / std::sqrt(static_cast<double>(D)));
            keys.push_back(c);
          }
          const double m = *std::max_element(p.begin(), p.end());
          double sum = 0;
          for (auto& x : p) sum += (x = std::exp(x - m));
          for (int d = 0; d < D; ++d) {
            double ref = 0;
            for (size_t i = 0; i < keys.size(); ++i) ref += p[i] / sum * kv(v_cache, keys[i], kvh, d);
            ASSERT_NEAR(out[t * out_stride + h * D + d], ref, 2e-6)
                << "seq " << s << " token " << j << " head " << h << " dim " << d;
          }
        }
        for (int64_t x = static_cast<int64_t>(nH) * D; x < out_stride; ++x) {
          ASSERT_EQ(out[t * out_stride + x], kPoison);
        }
      }
    }
  }
}

class PagedAttentionTest : public ::testing::TestWithParam<AttnCase> {};

// Decode tokens and prefill chunks mixed, short and long cached contexts.
TEST_P(PagedAttentionTest, MatchesDenseReference) {
  REQUIRE_AVX2();
  CheckAgainstDense(GetParam(), {{0, 1}, {6, 1}, {0, 7}, {40, 83}, {768, 1}, {3, 33}, {16, 17}});
}

// Fewer long decode tokens than threads: the split-K path (keys in parts, merged by max/sum).
TEST_P(PagedAttentionTest, SplitKDecodeOfFewLongSequences) {
  REQUIRE_AVX2();
  CheckAgainstDense(GetParam(), {{1500, 1}});
  CheckAgainstDense(GetParam(), {{777, 1}, {1030, 1}});
}

INSTANTIATE_TEST_SUITE_P(Shapes, PagedAttentionTest,
                         ::testing::Values(AttnCase{4, 4, 64, 0}, AttnCase{12, 4, 64, 0},
                                           AttnCase{8, 1, 80, 0}, AttnCase{6, 2, 96, 24},
                                           AttnCase{4, 2, 128, 0}, AttnCase{3, 3, 20, 5},
                                           AttnCase{8, 2, 64, 600}));

}  // namespace
}  // namespace muse::kernels::cpu
