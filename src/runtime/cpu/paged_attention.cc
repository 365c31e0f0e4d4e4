#include "src/runtime/cpu/paged_attention.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <limits>
#include <vector>

#include "src/runtime/cpu/vec_math.h"

namespace muse::runtime::cpu {
namespace {

// New tokens of one sequence per work item: long prefill chunks split across threads.
constexpr int64_t kQueryTile = 16;

struct Item {
  int seq;
  int64_t q_begin, q_end;  // flattened token range
};

MUSE_AVX2 inline float Dot(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float s = HorizontalSum(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// out[j] = q . k_j for 8 keys k_j = k + j * stride (d a multiple of 8): one accumulator per key,
// then a transpose-add tree instead of 8 horizontal sums.
MUSE_AVX2 inline void Dot8(const float* q, const float* k, int64_t stride, int64_t d, float* out) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  for (int64_t i = 0; i < d; i += 8) {
    const __m256 qv = _mm256_loadu_ps(q + i);
    a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + i), a0);
    a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + stride + i), a1);
    a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + 2 * stride + i), a2);
    a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + 3 * stride + i), a3);
    a4 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + 4 * stride + i), a4);
    a5 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + 5 * stride + i), a5);
    a6 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + 6 * stride + i), a6);
    a7 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + 7 * stride + i), a7);
  }
  const __m256 t0 = _mm256_hadd_ps(a0, a1), t1 = _mm256_hadd_ps(a2, a3);
  const __m256 t2 = _mm256_hadd_ps(a4, a5), t3 = _mm256_hadd_ps(a6, a7);
  const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  _mm256_storeu_ps(out, _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                                      _mm256_permute2f128_ps(u0, u1, 0x31)));
}

// x[i] = exp(x[i] - m); returns the sum.
MUSE_AVX2 inline float ExpSub(float* x, int64_t n, float m) {
  const __m256 mv = _mm256_set1_ps(m);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = Exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
    _mm256_storeu_ps(x + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  float s = HorizontalSum(acc);
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - m);
    s += x[i];
  }
  return s;
}

// acc[0, 8 NV) += sum_j p[j] * v[j * stride + (0, 8 NV)] over a run of keys, acc in registers.
template <int NV>
MUSE_AVX2 inline void AccumulateRun(const float* p, int64_t run, const float* v, int64_t stride,
                                    float* acc) {
  __m256 r[NV];
#pragma GCC unroll 8
  for (int i = 0; i < NV; ++i) r[i] = _mm256_loadu_ps(acc + 8 * i);
  for (int64_t j = 0; j < run; ++j) {
    const __m256 pj = _mm256_set1_ps(p[j]);
    const float* vj = v + j * stride;
#pragma GCC unroll 8
    for (int i = 0; i < NV; ++i) r[i] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8 * i), r[i]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < NV; ++i) _mm256_storeu_ps(acc + 8 * i, r[i]);
}

// Same for any width w (head dims that are not a multiple of 8 take the scalar tail).
MUSE_AVX2 inline void AccumulateRunAny(const float* p, int64_t run, const float* v, int64_t stride,
                                       float* acc, int64_t w) {
  int64_t d = 0;
  for (; d + 64 <= w; d += 64) AccumulateRun<8>(p, run, v + d, stride, acc + d);
  switch ((w - d) / 8) {
    case 7: AccumulateRun<7>(p, run, v + d, stride, acc + d); break;
    case 6: AccumulateRun<6>(p, run, v + d, stride, acc + d); break;
    case 5: AccumulateRun<5>(p, run, v + d, stride, acc + d); break;
    case 4: AccumulateRun<4>(p, run, v + d, stride, acc + d); break;
    case 3: AccumulateRun<3>(p, run, v + d, stride, acc + d); break;
    case 2: AccumulateRun<2>(p, run, v + d, stride, acc + d); break;
    case 1: AccumulateRun<1>(p, run, v + d, stride, acc + d); break;
    default: break;
  }
  for (d += (w - d) / 8 * 8; d < w; ++d) {
    for (int64_t j = 0; j < run; ++j) acc[d] += p[j] * v[j * stride + d];
  }
}

// Every head of one sequence's tokens [q_begin, q_end): the cache is [token][kv head][dim], so
// walking a sequence's keys for all heads at once reads each block as one contiguous 16-row run.
MUSE_AVX2 void RunItem(const PagedAttentionArgs& a, const Item& it, std::vector<float>& scores,
                       std::vector<float>& acc) {
  const int64_t D = a.head_dim, nH = a.num_heads, g = a.num_heads / a.num_kv_heads;
  const int64_t kv_row = static_cast<int64_t>(a.num_kv_heads) * D;  // floats per cached token
  const int32_t* table = a.block_tables + static_cast<int64_t>(it.seq) * a.max_blocks_per_seq;
  const int64_t q_begin_seq = a.query_start_loc[it.seq];
  const int64_t q_len = a.query_start_loc[it.seq + 1] - q_begin_seq;
  const int64_t seq_len = a.seq_lens[it.seq];
  // block_size is a power of two (checked in PagedAttention): shifts, not divisions, per key.
  const int shift = __builtin_ctz(static_cast<unsigned>(a.block_size));
  const int64_t mask = a.block_size - 1;
  auto row_of = [&](const float* cache, int64_t c) {
    const int64_t slot = (static_cast<int64_t>(table[c >> shift]) << shift) | (c & mask);
    return cache + slot * kv_row;
  };
  // Blocks are scattered through the pool, so the hardware prefetcher restarts at each one:
  // fetch the next block of this sequence while the current one is computed on.
  auto prefetch_block_after = [&](const float* cache, int64_t c, int64_t last) {
    const int64_t nc = ((c >> shift) + 1) << shift;
    if (nc > last) return;
    const char* p = reinterpret_cast<const char*>(row_of(cache, nc));
    const int64_t bytes = std::min<int64_t>(a.block_size, last - nc + 1) * kv_row * 4;
    for (int64_t off = 0; off < bytes; off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
  };
  float* inv_sum = acc.data() + nH * D;
  for (int64_t t = it.q_begin; t < it.q_end; ++t) {
    const int64_t qi = seq_len - q_len + (t - q_begin_seq);  // context index of this token
    const int64_t c0 = a.sliding_window > 0 ? std::max<int64_t>(0, qi - a.sliding_window + 1) : 0;
    const int64_t n = qi + 1 - c0;
    if (static_cast<int64_t>(scores.size()) < nH * n) scores.resize(nH * n);
    const float* q = a.q + t * a.q_stride;
    // Keys go in runs that share a block: rows kv_row apart, no table look-up inside a run.
    for (int64_t c = 0; c < n;) {
      const int64_t run = std::min(n - c, a.block_size - ((c0 + c) & mask));
      const float* k = row_of(a.k_cache, c0 + c);
      prefetch_block_after(a.k_cache, c0 + c, c0 + n - 1);
      for (int64_t h = 0; h < nH; ++h) {
        const float* qh = q + h * D;
        const float* kh = k + (h / g) * D;
        float* sh = scores.data() + h * n + c;
        int64_t j = 0;
        if (D % 8 == 0) {
          for (; j + 8 <= run; j += 8) Dot8(qh, kh + j * kv_row, kv_row, D, sh + j);
        }
        for (; j < run; ++j) sh[j] = Dot(qh, kh + j * kv_row, D);
        for (j = 0; j < run; ++j) sh[j] *= a.scale;
      }
      c += run;
    }
    for (int64_t h = 0; h < nH; ++h) {
      float* s = scores.data() + h * n;
      const float m = *std::max_element(s, s + n);
      inv_sum[h] = 1.0f / ExpSub(s, n, m);
    }
    std::fill(acc.begin(), acc.begin() + nH * D, 0.0f);
    for (int64_t c = 0; c < n;) {
      const int64_t run = std::min(n - c, a.block_size - ((c0 + c) & mask));
      const float* v = row_of(a.v_cache, c0 + c);
      prefetch_block_after(a.v_cache, c0 + c, c0 + n - 1);
      for (int64_t h = 0; h < nH; ++h) {
        AccumulateRunAny(scores.data() + h * n + c, run, v + (h / g) * D, kv_row,
                         acc.data() + h * D, D);
      }
      c += run;
    }
    float* out = a.out + t * a.out_stride;
    for (int64_t h = 0; h < nH; ++h) {
      for (int64_t d = 0; d < D; ++d) out[h * D + d] = acc[h * D + d] * inv_sum[h];
    }
  }
}

}  // namespace

void PagedAttention(const PagedAttentionArgs& a, ThreadPool& pool) {
  if (a.block_size <= 0 || (a.block_size & (a.block_size - 1)) != 0) {
    std::fprintf(stderr, "muse: PagedAttention needs a power-of-two block size, got %d\n",
                 a.block_size);
    std::abort();
  }
  std::vector<Item> items;
  for (int s = 0; s < a.num_seqs; ++s) {
    const int64_t b = a.query_start_loc[s], e = a.query_start_loc[s + 1];
    for (int64_t t = b; t < e; t += kQueryTile) items.push_back({s, t, std::min(e, t + kQueryTile)});
  }
  const int64_t nH = a.num_heads;
  auto run = [&](int64_t i) {
    thread_local std::vector<float> scores, acc;
    // acc: [num_heads, head_dim] output accumulators, then num_heads softmax normalisers.
    if (static_cast<int64_t>(acc.size()) < nH * (a.head_dim + 1)) acc.resize(nH * (a.head_dim + 1));
    RunItem(a, items[i], scores, acc);
  };
  // One decode token per item costs microseconds: small batches stay on the calling thread.
  if (items.size() < 4) {
    for (size_t i = 0; i < items.size(); ++i) run(static_cast<int64_t>(i));
  } else {
    pool.ParallelForDynamic(static_cast<int64_t>(items.size()), run);
  }
}

}  // namespace muse::runtime::cpu
