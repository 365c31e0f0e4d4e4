#include "kernels/cpu/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <utility>
#include <vector>

#include "kernels/cpu/vec_math.h"

namespace muse::kernels::cpu {
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
  for (; i + 8 <= n; i += 8)
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
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
  for (int i = 0; i < NV; ++i) r[i] = _mm256_loadu_ps(acc + 8 * int64_t{i});
  for (int64_t j = 0; j < run; ++j) {
    const __m256 pj = _mm256_set1_ps(p[j]);
    const float* vj = v + j * stride;
#pragma GCC unroll 8
    for (int i = 0; i < NV; ++i)
      r[i] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8 * int64_t{i}), r[i]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < NV; ++i) _mm256_storeu_ps(acc + 8 * int64_t{i}, r[i]);
}

// Same for any width w (head dims that are not a multiple of 8 take the scalar tail).
MUSE_AVX2 inline void AccumulateRunAny(const float* p, int64_t run, const float* v, int64_t stride,
                                       float* acc, int64_t w) {
  int64_t d = 0;
  for (; d + 64 <= w; d += 64) AccumulateRun<8>(p, run, v + d, stride, acc + d);
  switch ((w - d) / 8) {
    case 7:
      AccumulateRun<7>(p, run, v + d, stride, acc + d);
      break;
    case 6:
      AccumulateRun<6>(p, run, v + d, stride, acc + d);
      break;
    case 5:
      AccumulateRun<5>(p, run, v + d, stride, acc + d);
      break;
    case 4:
      AccumulateRun<4>(p, run, v + d, stride, acc + d);
      break;
    case 3:
      AccumulateRun<3>(p, run, v + d, stride, acc + d);
      break;
    case 2:
      AccumulateRun<2>(p, run, v + d, stride, acc + d);
      break;
    case 1:
      AccumulateRun<1>(p, run, v + d, stride, acc + d);
      break;
    default:
      break;
  }
  for (d += (w - d) / 8 * 8; d < w; ++d) {
    for (int64_t j = 0; j < run; ++j) acc[d] += p[j] * v[j * stride + d];
  }
}

// Attention of one new token (flattened index t of sequence seq) over the keys at context indices
// [c_lo, c_hi) for every head: acc[h * D ..] = sum_c exp(s_c - m_h) v_c (unnormalised), m[h] =
// max score, l[h] = sum_c exp(s_c - m_h). The cache is [token][kv head][dim], so walking the keys
// for all heads at once reads each block as one contiguous 16-row run.
MUSE_AVX2 void AttendRange(const PagedAttentionArgs& a, int seq, int64_t t, int64_t c_lo,
                           int64_t c_hi, std::vector<float>& scores, float* acc, float* m,
                           float* l) {
  const int64_t D = a.head_dim, nH = a.num_heads, g = a.num_heads / a.num_kv_heads;
  const int64_t kv_row = static_cast<int64_t>(a.num_kv_heads) * D;  // floats per cached token
  const int32_t* table = a.block_tables + static_cast<int64_t>(seq) * a.max_blocks_per_seq;
  // block_size is a power of two (checked in PagedAttention): shifts, not divisions, per key.
  const int shift = __builtin_ctz(static_cast<unsigned>(a.block_size));
  const int64_t mask = a.block_size - 1;
  auto row_of = [&](const float* cache, int64_t c) {
    const int64_t slot = (static_cast<int64_t>(table[c >> shift]) << shift) | (c & mask);
    return cache + slot * kv_row;
  };
  // Blocks are scattered through the pool, so the hardware prefetcher restarts at each one:
  // fetch the next block of this range while the current one is computed on.
  auto prefetch_block_after = [&](const float* cache, int64_t c) {
    const int64_t nc = ((c >> shift) + 1) << shift;
    if (nc >= c_hi) return;
    const char* p = reinterpret_cast<const char*>(row_of(cache, nc));
    const int64_t bytes = std::min<int64_t>(a.block_size, c_hi - nc) * kv_row * 4;
    for (int64_t off = 0; off < bytes; off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
  };
  const int64_t n = c_hi - c_lo;
  if (static_cast<int64_t>(scores.size()) < nH * n) scores.resize(nH * n);
  const float* q = a.q + t * a.q_stride;
  // Keys go in runs that share a block: rows kv_row apart, no table look-up inside a run.
  for (int64_t c = 0; c < n;) {
    const int64_t run = std::min(n - c, a.block_size - ((c_lo + c) & mask));
    const float* k = row_of(a.k_cache, c_lo + c);
    prefetch_block_after(a.k_cache, c_lo + c);
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
    float* sc = scores.data() + h * n;
    m[h] = *std::max_element(sc, sc + n);
    l[h] = ExpSub(sc, n, m[h]);
  }
  std::fill(acc, acc + nH * D, 0.0f);
  for (int64_t c = 0; c < n;) {
    const int64_t run = std::min(n - c, a.block_size - ((c_lo + c) & mask));
    const float* v = row_of(a.v_cache, c_lo + c);
    prefetch_block_after(a.v_cache, c_lo + c);
    for (int64_t h = 0; h < nH; ++h) {
      AccumulateRunAny(scores.data() + h * n + c, run, v + (h / g) * D, kv_row, acc + h * D, D);
    }
    c += run;
  }
}

// Context indices token t of sequence seq attends to: [lo, hi).
std::pair<int64_t, int64_t> Visible(const PagedAttentionArgs& a, int seq, int64_t t) {
  const int64_t q_begin = a.query_start_loc[seq];
  const int64_t q_len = a.query_start_loc[seq + 1] - q_begin;
  const int64_t qi = a.seq_lens[seq] - q_len + (t - q_begin);  // context index of this token
  const int64_t lo = a.sliding_window > 0 ? std::max<int64_t>(0, qi - a.sliding_window + 1) : 0;
  return {lo, qi + 1};
}

// Every new token of an item over its whole visible range, normalised into out.
void RunItem(const PagedAttentionArgs& a, const Item& it, std::vector<float>& scores,
             std::vector<float>& acc) {
  const int64_t D = a.head_dim, nH = a.num_heads;
  float* m = acc.data() + nH * D;
  float* l = m + nH;
  for (int64_t t = it.q_begin; t < it.q_end; ++t) {
    const auto [lo, hi] = Visible(a, it.seq, t);
    AttendRange(a, it.seq, t, lo, hi, scores, acc.data(), m, l);
    float* out = a.out + t * a.out_stride;
    for (int64_t h = 0; h < nH; ++h) {
      const float inv = 1.0f / l[h];
      for (int64_t d = 0; d < D; ++d) out[h * D + d] = acc[h * D + d] * inv;
    }
  }
}

// Keys per split-K part when a few long decode tokens would leave threads idle.
constexpr int64_t kMinSplitKeys = 256;

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
    for (int64_t t = b; t < e; t += kQueryTile)
      items.push_back({s, t, std::min(e, t + kQueryTile)});
  }
  const int64_t nH = a.num_heads, D = a.head_dim;
  const int threads = pool.num_threads();
  // acc: [num_heads, head_dim] accumulators, then num_heads maxima and num_heads sums.
  const int64_t acc_size = nH * (D + 2);

  // Split-K (flash-decoding) when there are fewer items than threads and every item is one
  // decode token with a long context: each part attends to a slice of the keys, then the parts
  // are merged with weights exp(m_p - m).
  bool split = threads > 1 && static_cast<int>(items.size()) < threads;
  for (size_t i = 0; split && i < items.size(); ++i) {
    const auto [lo, hi] = Visible(a, items[i].seq, items[i].q_begin);
    split = items[i].q_end - items[i].q_begin == 1 && hi - lo >= 2 * kMinSplitKeys;
  }
  if (split) {
    const int64_t parts = threads;
    std::vector<float> partial(items.size() * parts * acc_size);
    pool.ParallelForDynamic(static_cast<int64_t>(items.size()) * parts, [&](int64_t w) {
      thread_local std::vector<float> scores;
      const Item& it = items[w / parts];
      const int64_t part = w % parts;
      const auto [lo, hi] = Visible(a, it.seq, it.q_begin);
      const int64_t c_lo = lo + (hi - lo) * part / parts,
                    c_hi = lo + (hi - lo) * (part + 1) / parts;
      float* acc = partial.data() + w * acc_size;
      AttendRange(a, it.seq, it.q_begin, c_lo, c_hi, scores, acc, acc + nH * D, acc + nH * (D + 1));
    });
    for (size_t i = 0; i < items.size(); ++i) {
      float* out = a.out + items[i].q_begin * a.out_stride;
      const float* base = partial.data() + i * parts * acc_size;
      for (int64_t h = 0; h < nH; ++h) {
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t p = 0; p < parts; ++p) mx = std::max(mx, base[p * acc_size + nH * D + h]);
        float l = 0;
        for (int64_t d = 0; d < D; ++d) out[h * D + d] = 0;
        for (int64_t p = 0; p < parts; ++p) {
          const float* pp = base + p * acc_size;
          const float w = std::exp(pp[nH * D + h] - mx);
          l += w * pp[nH * (D + 1) + h];
          for (int64_t d = 0; d < D; ++d) out[h * D + d] += w * pp[h * D + d];
        }
        for (int64_t d = 0; d < D; ++d) out[h * D + d] /= l;
      }
    }
    return;
  }

  auto run = [&](int64_t i) {
    thread_local std::vector<float> scores, acc;
    if (static_cast<int64_t>(acc.size()) < acc_size) acc.resize(acc_size);
    RunItem(a, items[i], scores, acc);
  };
  // One decode token per item costs microseconds: small batches stay on the calling thread.
  if (items.size() < 4) {
    for (size_t i = 0; i < items.size(); ++i) run(static_cast<int64_t>(i));
  } else {
    pool.ParallelForDynamic(static_cast<int64_t>(items.size()), run);
  }
}

}  // namespace muse::kernels::cpu
