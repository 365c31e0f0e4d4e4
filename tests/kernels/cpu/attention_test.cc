// kernels/cpu/paged_attention against a dense double softmax(q k^T) v: shuffled block tables,
// mixed decode and prefill, sliding windows, 1 and 3 threads, split-K decode.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels/cpu/paged_attention.h"
#include "kernels/cpu/thread_pool.h"
#include "tests/kernels/cpu/test_util.h"

namespace muse::kernels::cpu::test {
namespace {

struct AttnCase {
  int heads, kv_heads, head_dim, window;
};

struct S {
  int cached, q;
};

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
        return static_cast<double>(
            cache[(static_cast<int64_t>(blk) * bs + c % bs) * row + h * D + d]);
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
            for (size_t i = 0; i < keys.size(); ++i)
              ref += p[i] / sum * kv(v_cache, keys[i], kvh, d);
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
}  // namespace muse::kernels::cpu::test
