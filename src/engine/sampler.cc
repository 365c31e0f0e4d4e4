#include "src/engine/sampler.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <utility>

#include "kernels/cpu/thread_pool.h"

// The hot loops are compiled for AVX2 as well as the baseline and picked at load time. Results do
// not depend on the choice: every loop keeps the scalar code's operation order (8 explicit lanes,
// no reassociation, and sampler.cc builds with -ffp-contract=off so nothing becomes an FMA).
// Not under TSan: the ifunc resolvers run during relocation, before the TSan runtime is up, and
// their instrumentation crashes the process at load.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define MUSE_SAMPLER_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MUSE_SAMPLER_CLONES
#endif

namespace muse::engine {

struct Sampler::Scratch {
  std::vector<float> work;   // processed logits (when any knob modifies them)
  std::vector<float> probs;  // exp values: all of them (top-p / min-p) or candidate blocks (top-k)
  std::vector<int32_t> idx;
  std::vector<int32_t> count;     // generated-token counts (penalties), kept zeroed between rows
  std::vector<uint8_t> seen;      // prompt or generated (repetition penalty), kept zeroed
  std::vector<double> block_sum;  // per 256-token block: SumOf its probs
  std::vector<float> block_max;   // per block: max of its probs (top-k)
  std::vector<float> order;       // block maxima, for the top-k threshold
};

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int kBlock = 256;  // InverseCdf's block

inline uint64_t SplitMix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// ---- The previous implementation's kernels, unchanged: the fast paths below reproduce their
// ---- results exactly, and rows they do not cover (NaN / inf) run on them as before.

// exp(x) for x <= 0 (inputs are logit - max), branch-free so the loop vectorizes: Cody-Waite
// range reduction + degree-6 polynomial, ~2 ulp; x < -87 (incl. -inf for masked tokens) -> 0.
__attribute__((always_inline)) static inline float ExpNonPositive(float x) {
  const float xc = x < -87.0f ? -87.0f : x;
  const float kMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (xc * 1.44269504f + kMagic) - kMagic;
  const float r = (xc - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
  float p = 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return x < -87.0f ? 0.0f : p * scale;
}

// Reductions in 8 independent lanes so they vectorize (sampler.cc builds with -fno-trapping-math).
static inline float MaxOf(const float* x, int n) {
  float m[8];
  for (int j = 0; j < 8; ++j) m[j] = kNegInf;
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) m[j] = m[j] > x[i + j] ? m[j] : x[i + j];
  }
  float r = kNegInf;
  for (int j = 0; j < 8; ++j) r = r > m[j] ? r : m[j];
  for (; i < n; ++i) r = r > x[i] ? r : x[i];
  return r;
}

static inline double SumOf(const float* x, int n) {
  float m[8] = {};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) m[j] += x[i + j];
  }
  double r = 0;
  for (int j = 0; j < 8; ++j) r += m[j];
  for (; i < n; ++i) r += x[i];
  return r;
}

// (count, sum) of the positive probs >= th, in lanes.
static inline std::pair<int64_t, double> MaskedSum(const float* x, int n, float th) {
  float m[8] = {};
  int32_t c[8] = {};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) {
      const bool in = x[i + j] >= th && x[i + j] > 0;
      m[j] += in ? x[i + j] : 0.0f;
      c[j] += in;
    }
  }
  double r = 0;
  int64_t cnt = 0;
  for (int j = 0; j < 8; ++j) {
    r += m[j];
    cnt += c[j];
  }
  for (; i < n; ++i) {
    if (x[i] >= th && x[i] > 0) {
      r += x[i];
      ++cnt;
    }
  }
  return {cnt, r};
}

// Index of the first maximum (two vectorized passes instead of a serial compare chain).
static inline int32_t ArgMax(const float* x, int n) {
  const float m = MaxOf(x, n);
  for (int i = 0; i < n; ++i)
    if (x[i] == m) return i;
  return 0;
}

// First index where the running sum of probs exceeds target (blocked: whole blocks are skipped
// by their vectorized sum). Returns the last positive index if rounding leaves target unreached.
static inline int32_t InverseCdf(const float* probs, int n, double target) {
  constexpr int kBlock = 256;
  double acc = 0;
  int32_t last = 0;
  for (int b = 0; b < n; b += kBlock) {
    const int len = std::min(kBlock, n - b);
    const double block = SumOf(probs + b, len);
    if (acc + block <= target) {
      acc += block;
      if (block > 0) {
        for (int i = b + len - 1; i >= b; --i) {
          if (probs[i] > 0) {
            last = i;
            break;
          }
        }
      }
      continue;
    }
    for (int i = b; i < b + len; ++i) {
      if (probs[i] <= 0) continue;
      acc += probs[i];
      last = i;
      if (acc > target) return i;
    }
  }
  return last;
}

// ---- Fused kernels, on GCC vector extensions (8 floats: two SSE registers in the baseline
// clone, one AVX2 register in the other). Each vector lane is one of the 8 lanes of the scalar
// kernels above, updated in the same order, so the results are theirs bit for bit.

// The helpers below are always inlined, so their vector arguments never cross an ABI boundary.
#pragma GCC diagnostic ignored "-Wpsabi"
using V8f = float __attribute__((vector_size(32)));
using V8i = int32_t __attribute__((vector_size(32)));

__attribute__((always_inline)) inline V8f Load8(const float* p) {
  V8f v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
__attribute__((always_inline)) inline void Store8(float* p, V8f v) {
  std::memcpy(p, &v, sizeof(v));
}
__attribute__((always_inline)) inline V8f Splat(float x) { return V8f{} + x; }

// ExpNonPositive on 8 lanes: the same operations in the same order.
__attribute__((always_inline)) inline V8f Exp8(V8f x) {
  const V8f lo = Splat(-87.0f);
  const V8i under = x < lo;
  const V8f xc = under ? lo : x;
  const float kMagic = 12582912.0f;
  const V8f n = (xc * 1.44269504f + kMagic) - kMagic;
  const V8f r = (xc - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
  V8f p = Splat(1.0f / 720);
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const V8i bits = (__builtin_convertvector(n, V8i) + 127) << 23;
  const V8f scale = __builtin_bit_cast(V8f, bits);
  return under ? Splat(0.0f) : p * scale;
}

// Exp8 over N vectors at once, stage by stage, so that N independent dependency chains are in
// flight (the polynomial is one long chain per vector). Same operations per lane as Exp8.
template <int N>
__attribute__((always_inline)) inline void ExpN(V8f (&v)[N]) {
  const V8f lo = Splat(-87.0f);
  const float kMagic = 12582912.0f;
  V8i under[N];
  V8f n[N], r[N], p[N];
  for (int c = 0; c < N; ++c) under[c] = v[c] < lo;
  for (int c = 0; c < N; ++c) v[c] = under[c] ? lo : v[c];
  for (int c = 0; c < N; ++c) n[c] = (v[c] * 1.44269504f + kMagic) - kMagic;
  for (int c = 0; c < N; ++c)
    r[c] = (v[c] - n[c] * 0.693145751953125f) - n[c] * 1.428606765330187e-06f;
  for (int c = 0; c < N; ++c) p[c] = Splat(1.0f / 720) * r[c] + 1.0f / 120;
  for (int c = 0; c < N; ++c) p[c] = p[c] * r[c] + 1.0f / 24;
  for (int c = 0; c < N; ++c) p[c] = p[c] * r[c] + 1.0f / 6;
  for (int c = 0; c < N; ++c) p[c] = p[c] * r[c] + 0.5f;
  for (int c = 0; c < N; ++c) p[c] = p[c] * r[c] + 1.0f;
  for (int c = 0; c < N; ++c) p[c] = p[c] * r[c] + 1.0f;
  for (int c = 0; c < N; ++c) {
    const V8i bits = (__builtin_convertvector(n[c], V8i) + 127) << 23;
    v[c] = under[c] ? Splat(0.0f) : p[c] * __builtin_bit_cast(V8f, bits);
  }
}

__attribute__((always_inline)) inline V8f Max8(V8f m, V8f v) { return m > v ? m : v; }

__attribute__((always_inline)) inline float HMax(V8f v) {
  float h = v[0];
  for (int j = 1; j < 8; ++j) h = h > v[j] ? h : v[j];
  return h;
}

struct MaxArg {
  float max;       // == MaxOf(x, n), bit for bit
  int32_t argmax;  // == ArgMax(x, n) when !unordered
  bool unordered;  // x holds a NaN (then ArgMax's scan semantics are used instead)
};

// One pass: MaxOf's lanes, plus per lane the first index of its strict maximum and a NaN flag;
// with kBlocks also the max logit of every 256-block (block_xmax; meaningless when unordered).
template <bool kBlocks>
__attribute__((always_inline)) inline MaxArg MaxArgMaxImpl(const float* x, int n,
                                                           float* block_xmax) {
  V8f m = Splat(kNegInf), bv = m;
  V8i bi = {0, 1, 2, 3, 4, 5, 6, 7}, idx = bi, un = V8i{};
  int i = 0;
  for (int b = 0; b < n; b += kBlock) {
    const int end = std::min(n, b + kBlock);
    V8f bm = Splat(kNegInf);
    for (; i + 8 <= end; i += 8) {
      const V8f v = Load8(x + i);
      m = Max8(m, v);
      const V8i gt = v > bv;
      bv = gt ? v : bv;
      bi = gt ? idx : bi;
      un |= v != v;
      idx += 8;
      if (kBlocks) bm = Max8(bm, v);
    }
    if (kBlocks) {
      float h = HMax(bm);
      for (int t = i; t < end; ++t) h = h > x[t] ? h : x[t];
      block_xmax[b / kBlock] = h;
    }
  }
  const int lanes_end = i;
  MaxArg r{kNegInf, 0, false};
  for (int j = 0; j < 8; ++j) r.max = r.max > m[j] ? r.max : m[j];
  for (; i < n; ++i) {
    r.max = r.max > x[i] ? r.max : x[i];
    if (x[i] != x[i]) r.unordered = true;
  }
  for (int j = 0; j < 8; ++j) r.unordered = r.unordered || un[j] != 0;
  if (r.unordered) return r;
  // First index holding the maximum: the smallest lane index among lanes whose maximum equals
  // it, else the first tail element equal to it (tail indices follow every lane index).
  int32_t best = -1;
  if (lanes_end > 0) {
    for (int j = 0; j < 8; ++j) {
      if (bv[j] == r.max && (best < 0 || bi[j] < best)) best = bi[j];
    }
  }
  for (int k = lanes_end; best < 0 && k < n; ++k) {
    if (x[k] == r.max) best = k;
  }
  r.argmax = best < 0 ? 0 : best;
  return r;
}

MUSE_SAMPLER_CLONES MaxArg MaxArgMax(const float* x, int n) {
  return MaxArgMaxImpl<false>(x, n, nullptr);
}

MUSE_SAMPLER_CLONES MaxArg MaxArgMaxBlocks(const float* x, int n, float* block_xmax) {
  return MaxArgMaxImpl<true>(x, n, block_xmax);
}

// The exp pass without storing the probs: per 256-block SumOf of the probs (block_sum) and, for
// top-k, their max (block_max), and the row's SumOf(probs, n). A rescan recomputes the same bits
// where needed.
// `next` (nullable): the next row's logits, prefetched while this compute-bound pass runs so
// that its max pass reads from cache rather than DRAM.
constexpr int kChains = 8;  // vectors of 8 per iteration of the exp pass; 8 * kChains | kBlock

template <bool kBlockMax>
__attribute__((always_inline)) inline double ExpSumsImpl(const float* x, int n, float mx,
                                                         float inv_t, double* block_sum,
                                                         float* block_max, const float* next) {
  V8f g{};
  int tail_begin = n;
  for (int b = 0, k = 0; b < n; b += kBlock, ++k) {
    const int end = std::min(n, b + kBlock);
    V8f bl{}, mm{};
    int i = b;
    for (; i + 8 * kChains <= end; i += 8 * kChains) {
      if (next != nullptr) {
        for (int c = 0; c < kChains; c += 2) __builtin_prefetch(next + (i + 8 * c), 0, 2);
      }
      V8f p[kChains];
      for (int c = 0; c < kChains; ++c) p[c] = (Load8(x + (i + 8 * c)) - mx) * inv_t;
      ExpN(p);
      for (int c = 0; c < kChains; ++c) bl += p[c];
      for (int c = 0; c < kChains; ++c) g += p[c];
      if (kBlockMax) {
        for (int c = 0; c < kChains; ++c) mm = Max8(mm, p[c]);
      }
    }
    for (; i + 8 <= end; i += 8) {
      const V8f p0 = Exp8((Load8(x + i) - mx) * inv_t);
      bl += p0;
      g += p0;
      if (kBlockMax) mm = Max8(mm, p0);
    }
    double r = 0;
    for (int j = 0; j < 8; ++j) r += bl[j];
    float mb = kBlockMax ? HMax(mm) : 0.0f;
    if (end == n) tail_begin = i;
    for (; i < end; ++i) {
      const float p = ExpNonPositive((x[i] - mx) * inv_t);
      r += p;
      mb = mb > p ? mb : p;
    }
    block_sum[k] = r;
    if (kBlockMax) block_max[k] = mb;
  }
  double r = 0;
  for (int j = 0; j < 8; ++j) r += g[j];
  // SumOf's tail: the last n % 8 probs, in order.
  for (int i = tail_begin; i < n; ++i) r += ExpNonPositive((x[i] - mx) * inv_t);
  return r;
}

MUSE_SAMPLER_CLONES double ExpSums(const float* x, int n, float mx, float inv_t, double* block_sum,
                                   const float* next) {
  return ExpSumsImpl<false>(x, n, mx, inv_t, block_sum, nullptr, next);
}

MUSE_SAMPLER_CLONES double ExpSumsMax(const float* x, int n, float mx, float inv_t,
                                      double* block_sum, float* block_max, const float* next) {
  return ExpSumsImpl<true>(x, n, mx, inv_t, block_sum, block_max, next);
}

// Top-k candidates: recomputes the probs of the 256-blocks whose max reaches th (into probs, at
// their indices) and appends the indices with prob >= th and > 0 to idx, ascending.
MUSE_SAMPLER_CLONES void ExpCollect(const float* x, int n, float mx, float inv_t, float th,
                                    const float* block_max, float* probs,
                                    std::vector<int32_t>* idx) {
  for (int b = 0; b < n; b += kBlock) {
    const float bm = block_max[b / kBlock];
    if (!(bm >= th && bm > 0)) continue;
    const int end = std::min(n, b + kBlock);
    int i = b;
    for (; i + 8 <= end; i += 8) Store8(probs + i, Exp8((Load8(x + i) - mx) * inv_t));
    for (; i < end; ++i) probs[i] = ExpNonPositive((x[i] - mx) * inv_t);
    for (i = b; i < end; ++i) {
      if (probs[i] >= th && probs[i] > 0) idx->push_back(i);
    }
  }
}

// Top-k by logits: for each i in [b, end) with y = (x[i] - mx) * inv_t >= y_lo, probs[i] =
// ExpNonPositive(y) and i is appended to idx; *th_p = min of those probs whose x[i] >= th_x.
MUSE_SAMPLER_CLONES void CollectByLogit(const float* x, int b, int end, float mx, float inv_t,
                                        float y_lo, float th_x, float* probs,
                                        std::vector<int32_t>* idx, float* th_p) {
  int i = b;
  for (; i + 8 <= end; i += 8) {
    const V8i in = (Load8(x + i) - mx) * inv_t >= y_lo;
    uint64_t any[4];
    std::memcpy(any, &in, sizeof(any));
    if ((any[0] | any[1] | any[2] | any[3]) == 0) continue;
    for (int t = i; t < i + 8; ++t) {
      const float y = (x[t] - mx) * inv_t;
      if (!(y >= y_lo)) continue;
      probs[t] = ExpNonPositive(y);
      idx->push_back(t);
      if (x[t] >= th_x) *th_p = std::min(*th_p, probs[t]);
    }
  }
  for (; i < end; ++i) {
    const float y = (x[i] - mx) * inv_t;
    if (!(y >= y_lo)) continue;
    probs[i] = ExpNonPositive(y);
    idx->push_back(i);
    if (x[i] >= th_x) *th_p = std::min(*th_p, probs[i]);
  }
}

// The exp pass storing every prob (top-p / min-p without top-k need them all); returns SumOf.
MUSE_SAMPLER_CLONES double ExpStore(const float* x, int n, float mx, float inv_t, float* probs,
                                    const float* next) {
  V8f m{};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    if (next != nullptr && i % 16 == 0) __builtin_prefetch(next + i, 0, 2);
    const V8f p = Exp8((Load8(x + i) - mx) * inv_t);
    Store8(probs + i, p);
    m += p;
  }
  double r = 0;
  for (int j = 0; j < 8; ++j) r += m[j];
  for (; i < n; ++i) {
    probs[i] = ExpNonPositive((x[i] - mx) * inv_t);
    r += probs[i];
  }
  return r;
}

// The probs of [b, end) into out[0, end - b).
inline void ExpRange(const float* x, int b, int end, float mx, float inv_t, float* out) {
  int i = b;
  for (; i + 8 <= end; i += 8) Store8(out + (i - b), Exp8((Load8(x + i) - mx) * inv_t));
  for (; i < end; ++i) out[i - b] = ExpNonPositive((x[i] - mx) * inv_t);
}

// Whether any of x[0, 16) is > th.
inline bool AnyGreater16(const float* x, float th) {
  int any = 0;
  for (int j = 0; j < 16; ++j) any |= x[j] > th ? 1 : 0;
  return any != 0;
}

// work = logits with the tokens outside `allowed` ([ceil(V / 32)] words) set to -inf: per 8 lanes
// a splat of the word's byte AND the lanes' bits, so the select vectorizes (no per-bit branch).
MUSE_SAMPLER_CLONES void MaskedCopy(const float* x, const uint32_t* allowed, int V,
                                    std::vector<float>& work) {
  work.resize(V);
  float* out = work.data();
  const V8i lane_bit = {1, 2, 4, 8, 16, 32, 64, 128};
  const V8f neg = Splat(kNegInf);
  int b = 0;
  for (; b + 32 <= V; b += 32) {
    const uint32_t word = allowed[b / 32];
    for (int j = 0; j < 32; j += 8) {
      const V8i on = ((V8i{} + static_cast<int32_t>((word >> j) & 0xffu)) & lane_bit) != 0;
      Store8(out + b + j, on ? Load8(x + b + j) : neg);
    }
  }
  for (; b < V; ++b) out[b] = (allowed[b / 32] >> (b % 32)) & 1u ? x[b] : kNegInf;
}

}  // namespace

double CounterUniform(uint64_t seed, uint64_t stream, uint64_t step) {
  uint64_t x = SplitMix(seed);
  x = SplitMix(x ^ (stream * 0xD1B54A32D192ED03ull));
  x = SplitMix(x ^ (step * 0x8CB92BA72F3D8DD7ull));
  return static_cast<double>(x >> 11) * 0x1.0p-53;
}

namespace {

void ApplyPenalties(const SamplingRow& row, int vocab_size, Sampler::Scratch& s) {
  const SamplingParams& p = *row.params;
  const bool rep = p.repetition_penalty != 1.0f;
  const bool freq = p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
  if (!rep && !freq) return;
  const std::vector<int32_t>& toks = *row.tokens;
  s.count.resize(vocab_size, 0);
  s.seen.resize(vocab_size, 0);
  for (size_t i = 0; i < toks.size(); ++i) {
    const int32_t t = toks[i];
    if (t < 0 || t >= vocab_size) continue;
    s.seen[t] = 1;
    if (static_cast<int>(i) >= row.num_prompt_tokens) ++s.count[t];
  }
  for (int32_t t : toks) {
    if (t < 0 || t >= vocab_size || !s.seen[t]) continue;  // each token once
    float& l = s.work[t];
    if (rep) l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
    if (s.count[t] > 0) l -= p.presence_penalty + p.frequency_penalty * s.count[t];
    s.seen[t] = 0;
    s.count[t] = 0;
  }
}

// The previous Draw from its probs on: top-k / min-p / top-p by the threshold search, then the
// draw. `probs` holds every prob of the row.
// The end of every filtered draw: the top-p cut over candidates `idx[0, n)` sorted by
// (prob desc, id asc) with survivor mass `total`, then the inverse CDF at u over what is kept.
int32_t DrawSorted(const float* probs, const int32_t* idx, int n, double total, bool use_p,
                   float top_p, double u) {
  if (use_p) {
    double acc = 0;
    int keep = n;
    for (int i = 0; i < n; ++i) {
      acc += probs[idx[i]];
      if (acc >= top_p * total) {
        keep = i + 1;
        break;
      }
    }
    n = keep;
    total = acc;
  }
  double target = u * total, acc = 0;
  for (int i = 0; i < n; ++i) {
    acc += probs[idx[i]];
    if (acc > target) return idx[i];
  }
  return idx[n - 1];
}

int32_t DrawFromProbs(const SamplingParams& p, int V, const float* logits, const float* probs,
                      double u, std::vector<int32_t>& idx) {
  const bool use_k = p.top_k > 0 && p.top_k < V;
  const bool use_p = p.top_p < 1.0f;
  const bool use_min_p = p.min_p > 0.0f;
  if (!use_k && !use_p && !use_min_p) return InverseCdf(probs, V, u * SumOf(probs, V));
  // min_p survivors: prob >= min_p * p_max (p_max == 1).
  const float surv = use_min_p ? p.min_p : 0.0f;
  double mass_surv = use_min_p ? MaskedSum(probs, V, surv).second : SumOf(probs, V);
  // Sort only the head of the distribution: the smallest threshold whose candidate set provably
  // contains the top-k (count >= k), or the nucleus (mass >= top_p * survivor mass). Exact.
  float t = 1.0f / 16;
  while (true) {
    const auto [count, mass] = MaskedSum(probs, V, std::max(t, surv));
    const bool enough =
        use_k ? count >= p.top_k : (use_p ? mass >= p.top_p * mass_surv : t <= surv);
    if (enough || t == 0.0f) break;
    t = t < 0x1.0p-40f ? 0.0f : t * (1.0f / 256);
  }
  const float th = std::max(t, surv);
  idx.clear();
  for (int i = 0; i < V; ++i) {
    if (probs[i] >= th && probs[i] > 0) idx.push_back(i);
  }
  // Descending probability, ties by token id (deterministic).
  auto better = [&](int32_t a, int32_t b) {
    return probs[a] != probs[b] ? probs[a] > probs[b] : a < b;
  };
  std::sort(idx.begin(), idx.end(), better);
  int n = static_cast<int>(idx.size());
  if (n == 0) return ArgMax(logits, V);
  if (use_k) n = std::min(n, p.top_k);
  double total = 0;
  if (use_k) {
    for (int i = 0; i < n; ++i) total += probs[idx[i]];
  } else {
    total = mass_surv;
  }
  return DrawSorted(probs, idx.data(), n, total, use_p, p.top_p, u);
}

// The previous Draw, whole: max, exp into s.probs, DrawFromProbs. For rows whose probs are not
// all finite (NaN / inf logits, degenerate temperatures), which the fast paths do not cover.
int32_t DrawSlow(const SamplingParams& p, int V, const float* logits, double u,
                 Sampler::Scratch& s) {
  const float inv_t = 1.0f / p.temperature;
  const float mx = MaxOf(logits, V);
  s.probs.resize(V);
  float* probs = s.probs.data();
  for (int i = 0; i < V; ++i) probs[i] = ExpNonPositive((logits[i] - mx) * inv_t);
  return DrawFromProbs(p, V, logits, probs, u, s.idx);
}

// Plain temperature sampling: InverseCdf over the block sums of the exp pass; only the blocks
// the scan enters are recomputed.
int32_t DrawInverseCdf(const float* x, int V, float mx, float inv_t, double target,
                       const Sampler::Scratch& s) {
  double acc = 0;
  int32_t last = 0;
  int last_block = -1;  // `last` is the last positive prob of this skipped block (found lazily)
  float tmp[kBlock];
  for (int b = 0, k = 0; b < V; b += kBlock, ++k) {
    const int len = std::min(kBlock, V - b);
    const double block = s.block_sum[k];
    if (acc + block <= target) {
      acc += block;
      if (block > 0) last_block = k;
      continue;
    }
    ExpRange(x, b, b + len, mx, inv_t, tmp);
    for (int i = b; i < b + len; ++i) {
      if (tmp[i - b] <= 0) continue;
      acc += tmp[i - b];
      last = i;
      last_block = -1;
      if (acc > target) return i;
    }
  }
  if (last_block >= 0) {
    const int b = last_block * kBlock;
    const int len = std::min(kBlock, V - b);
    ExpRange(x, b, b + len, mx, inv_t, tmp);
    for (int i = b + len - 1; i >= b; --i) {
      if (tmp[i - b] > 0) return i;
    }
  }
  return last;
}

// The previous Draw from its sorted candidates on, for top-k: `idx` holds a superset of the k
// best (prob desc, id asc) of S = {prob > 0, prob >= min_p} that contains every member of S with a
// prob at least that of any member left out; probs[i] is set for each i in idx.
int32_t DrawTopKCandidates(const SamplingParams& p, int V, const float* x, const float* probs,
                           double u, std::vector<int32_t>& idx) {
  const bool use_p = p.top_p < 1.0f;
  auto better = [&](int32_t a, int32_t b) {
    return probs[a] != probs[b] ? probs[a] > probs[b] : a < b;
  };
  int n = static_cast<int>(idx.size());
  if (n == 0) return ArgMax(x, V);
  if (n > p.top_k) {
    std::nth_element(idx.begin(), idx.begin() + (p.top_k - 1), idx.end(), better);
    n = p.top_k;
  }
  std::sort(idx.begin(), idx.begin() + n, better);
  double total = 0;
  for (int i = 0; i < n; ++i) total += probs[idx[i]];
  return DrawSorted(probs, idx.data(), n, total, use_p, p.top_p, u);
}

// A grammar's row that allows few tokens (JSON structure, an enum, a number's digits): sampled
// from those tokens alone, with the dense path's result bit for bit. The dense path runs on the
// row with every other token at -inf, whose exp is exactly +0 and changes no float sum, so the
// same sums come out of adding only the allowed tokens' probs in the dense order: per 256-block
// and per lane (index % 8) in increasing index order, the lanes then folded in order as doubles,
// and the row's last V % 8 tokens (the dense pass's tail) added after them. The max and the first
// index holding it are order-free (a zero's sign does not change any exp). Covers greedy and
// plain temperature rows without any other logit change or logprobs; false: the caller takes the
// dense path (also for NaN, a row whose allowed logits are all -inf, or a non-finite sum).
// Why: at a 128k vocabulary the dense passes cost ~100 us a row (copy, max, exp), the sparse one
// ~10 ns per allowed token.
constexpr int kSparseDivisor = 32;  // sparse when at most V / 32 tokens are allowed

// Set bits of allowed[0, words), stopping once past `limit` (a dense row's bitmask is then read
// only in part). A clone so that popcount is one instruction (the baseline calls libgcc's).
MUSE_SAMPLER_CLONES int CountAllowed(const uint32_t* allowed, int words, int limit) {
  int count = 0;
  for (int w = 0; w < words; w += 64) {
    const int end = std::min(words, w + 64);
    for (int i = w; i < end; ++i) count += std::popcount(allowed[i]);
    if (count > limit) break;
  }
  return count;
}

bool SampleSparseAllowed(const SamplingRow& row, int V, Sampler::Scratch& s, SampleResult* result) {
  const SamplingParams& p = *row.params;
  const uint32_t* allowed = row.allowed_bitmask;
  const int words = (V + 31) / 32;
  const int count = CountAllowed(allowed, words, V / kSparseDivisor);
  if (count == 0 || count > V / kSparseDivisor) return false;
  std::vector<int32_t>& ids = s.idx;
  ids.clear();
  for (int w = 0; w < words; ++w) {
    for (uint32_t bits = allowed[w]; bits != 0; bits &= bits - 1) {
      const int32_t id = w * 32 + std::countr_zero(bits);
      if (id < V) ids.push_back(id);
    }
  }
  const float* x = row.logits;
  float mx = kNegInf;
  int32_t argmax = -1;
  for (int32_t id : ids) {
    const float v = x[id];
    if (v != v) return false;  // NaN: the dense path's unordered handling
    if (v > mx) {
      mx = v;
      argmax = id;
    }
  }
  if (argmax < 0) return false;  // every allowed logit is -inf
  if (p.temperature == 0.0f) {
    result->token_id = argmax;
    return true;
  }
  const int generated = static_cast<int>(row.tokens->size()) - row.num_prompt_tokens;
  const double u = CounterUniform(row.seed, static_cast<uint64_t>(row.sample_index),
                                  static_cast<uint64_t>(generated));
  const float inv_t = 1.0f / p.temperature;
  const int nb = (V + kBlock - 1) / kBlock;
  const int tail_begin = V - V % 8;
  s.block_sum.assign(nb, 0.0);
  float lanes[8] = {}, block_lanes[8] = {};
  int block = -1;
  auto close_block = [&] {
    if (block < 0) return;
    double r = 0;
    for (int j = 0; j < 8; ++j) r += block_lanes[j];
    s.block_sum[block] = r;
  };
  for (int32_t id : ids) {
    if (id / kBlock != block) {
      close_block();
      block = id / kBlock;
      std::fill(block_lanes, block_lanes + 8, 0.0f);
    }
    const float e = ExpNonPositive((x[id] - mx) * inv_t);
    if (id < tail_begin) {
      block_lanes[id % 8] += e;
      lanes[id % 8] += e;
    }
  }
  close_block();
  // The tail: added after the lanes, to its block's sum and to the row's, in index order.
  for (int32_t id : ids) {
    if (id < tail_begin) continue;
    const double e = ExpNonPositive((x[id] - mx) * inv_t);
    s.block_sum[id / kBlock] += e;
  }
  double total = 0;
  for (int j = 0; j < 8; ++j) total += lanes[j];
  for (int32_t id : ids) {
    if (id >= tail_begin) total += ExpNonPositive((x[id] - mx) * inv_t);
  }
  if (!std::isfinite(total)) return false;
  // DrawInverseCdf over the allowed tokens: skip whole blocks by their sums, walk the entered one.
  const double target = u * total;
  double acc = 0;
  int32_t last = 0;
  int last_block = -1;
  size_t at = 0;  // first id of the current block in `ids`
  for (int k = 0; k < nb && at < ids.size(); ++k) {
    size_t end = at;
    while (end < ids.size() && ids[end] / kBlock == k) ++end;
    const double bsum = s.block_sum[k];
    if (acc + bsum <= target) {
      acc += bsum;
      if (bsum > 0) last_block = k;
      at = end;
      continue;
    }
    for (size_t i = at; i < end; ++i) {
      const float e = ExpNonPositive((x[ids[i]] - mx) * inv_t);
      if (e <= 0) continue;
      acc += e;
      last = ids[i];
      last_block = -1;
      if (acc > target) {
        result->token_id = ids[i];
        return true;
      }
    }
    at = end;
  }
  if (last_block >= 0) {
    for (size_t i = ids.size(); i-- > 0;) {
      if (ids[i] / kBlock > last_block) continue;
      if (ids[i] / kBlock < last_block) break;
      if (ExpNonPositive((x[ids[i]] - mx) * inv_t) > 0) {
        result->token_id = ids[i];
        return true;
      }
    }
  }
  result->token_id = last;
  return true;
}

// Top-k (with top-p / min-p): the k best of S = {prob > 0, prob >= min_p} in (prob desc, id asc)
// order are what the previous threshold search sorted. At least k probs reach the k-th largest
// 256-block maximum, so only the blocks whose maximum reaches it are recomputed and selected from
// (nth_element, then a sort of the k).
int32_t DrawTopK(const SamplingParams& p, int V, const float* x, float mx, float inv_t, double u,
                 Sampler::Scratch& s) {
  const int nb = (V + kBlock - 1) / kBlock;
  const float surv = p.min_p > 0.0f ? p.min_p : 0.0f;
  float th = 0.0f;
  if (p.top_k <= nb) {  // the k-th largest block maximum: at least k probs reach it
    s.order.assign(s.block_max.begin(), s.block_max.begin() + nb);
    std::nth_element(s.order.begin(), s.order.begin() + (p.top_k - 1), s.order.end(),
                     std::greater<float>());
    th = s.order[p.top_k - 1];
  }
  th = std::max(th, surv);
  s.probs.resize(V);
  float* probs = s.probs.data();
  std::vector<int32_t>& idx = s.idx;
  idx.clear();
  ExpCollect(x, V, mx, inv_t, th, s.block_max.data(), probs, &idx);
  return DrawTopKCandidates(p, V, x, probs, u, idx);
}

// Top-k without the exp pass. ExpNonPositive is within ~1e-6 (relative) of exp on [-87, 0] and
// returns normal floats there, so for y_j < y_i - 1e-3 with y_i >= -80 it returns less for y_j
// than for y_i (or 0): probabilities follow y = (logit - max) / T up to that margin. At least k
// logits reach the k-th largest 256-block max logit th_x; every token whose y is under
// y(th_x) - margin has a smaller prob than all of those, so the candidates are the tokens within
// the margin (found through the blocks' max logits of pass 1), with a prob >= the smallest prob
// among the logits >= th_x (and >= min_p). Returns -1 when the preconditions do not hold (the
// caller then runs the exp pass).
int32_t DrawTopKByLogits(const SamplingParams& p, int V, const float* x, float mx, float inv_t,
                         double u, Sampler::Scratch& s) {
  const int nb = (V + kBlock - 1) / kBlock;
  if (p.top_k > nb || !std::isfinite(mx) || !std::isfinite(inv_t) || !(inv_t > 0)) return -1;
  s.order.assign(s.block_max.begin(), s.block_max.begin() + nb);  // block max logits
  std::nth_element(s.order.begin(), s.order.begin() + (p.top_k - 1), s.order.end(),
                   std::greater<float>());
  const float th_x = s.order[p.top_k - 1];
  const float y_th = (th_x - mx) * inv_t;
  const float y_lo = y_th - 1e-3f;
  if (!(y_lo >= -80.0f)) return -1;
  s.probs.resize(V);
  float* probs = s.probs.data();
  std::vector<int32_t>& idx = s.idx;
  idx.clear();
  float th_p = std::numeric_limits<float>::infinity();  // min prob over logits >= th_x
  for (int k = 0; k < nb; ++k) {
    if (!((s.block_max[k] - mx) * inv_t >= y_lo)) continue;
    CollectByLogit(x, k * kBlock, std::min(V, (k + 1) * kBlock), mx, inv_t, y_lo, th_x, probs, &idx,
                   &th_p);
  }
  const float th = std::max(th_p, p.min_p > 0.0f ? p.min_p : 0.0f);
  size_t kept = 0;
  for (int32_t i : idx) {
    if (probs[i] >= th && probs[i] > 0) idx[kept++] = i;
  }
  idx.resize(kept);
  return DrawTopKCandidates(p, V, x, probs, u, idx);
}

// `next` (nullable): the logits this thread samples next (prefetched during the exp pass).
SampleResult SampleOne(const SamplingRow& row, int V, Sampler::Scratch& s, const float* next) {
  const SamplingParams& p = *row.params;
  const int generated = static_cast<int>(row.tokens->size()) - row.num_prompt_tokens;
  const uint32_t* allowed = row.allowed_bitmask;
  const bool mask = generated < p.min_tokens && allowed == nullptr;
  const bool modify = allowed != nullptr || mask || !p.logit_bias.empty() ||
                      p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f ||
                      p.frequency_penalty != 0.0f;
  if (allowed != nullptr && !mask && p.logit_bias.empty() && p.repetition_penalty == 1.0f &&
      p.presence_penalty == 0.0f && p.frequency_penalty == 0.0f && p.logprobs < 0 &&
      (p.temperature == 0.0f ||
       ((p.top_k <= 0 || p.top_k >= V) && p.top_p >= 1.0f && p.min_p <= 0.0f))) {
    SampleResult sparse;
    if (SampleSparseAllowed(row, V, s, &sparse)) return sparse;
  }
  // Unmodified logits are read in place (a 128k-vocab row is 512 KiB).
  const float* w = row.logits;
  if (modify) {
    if (allowed != nullptr) {
      MaskedCopy(row.logits, allowed, V, s.work);
    } else {
      s.work.assign(row.logits, row.logits + V);
    }
    if (mask) {
      if (!p.ignore_eos && row.eos_token_ids) {
        for (int64_t e : *row.eos_token_ids)
          if (e >= 0 && e < V) s.work[e] = kNegInf;
      }
      for (int32_t t : p.stop_token_ids)
        if (t >= 0 && t < V) s.work[t] = kNegInf;
    }
    for (const auto& [t, bias] : p.logit_bias) {
      if (t >= 0 && t < V) s.work[t] += bias;
    }
    ApplyPenalties(row, V, s);
    w = s.work.data();
  }

  // Pass 1: max (MaxOf's bits) and argmax; for top-k also the blocks' max logits.
  const int nb = (V + kBlock - 1) / kBlock;
  s.block_sum.resize(nb);
  s.block_max.resize(nb);
  const bool top_k = p.temperature != 0.0f && p.top_k > 0 && p.top_k < V;
  const MaxArg ma = top_k ? MaxArgMaxBlocks(w, V, s.block_max.data()) : MaxArgMax(w, V);
  // SumOf(exp(w - max)) when the exp pass at temperature 1 has run (the logprobs' normalizer).
  double sum_t1 = 0;
  bool have_sum_t1 = false;

  SampleResult result;
  if (p.temperature == 0.0f) {
    result.token_id = ma.unordered ? ArgMax(w, V) : ma.argmax;
  } else {
    const double u = CounterUniform(row.seed, static_cast<uint64_t>(row.sample_index),
                                    static_cast<uint64_t>(generated));
    const float inv_t = 1.0f / p.temperature;
    const bool use_k = p.top_k > 0 && p.top_k < V;
    const bool use_p = p.top_p < 1.0f;
    const bool use_min_p = p.min_p > 0.0f;
    if (!use_k && (use_p || use_min_p)) {
      // Top-p / min-p without top-k: the threshold search needs every prob.
      s.probs.resize(V);
      const double total = ExpStore(w, V, ma.max, inv_t, s.probs.data(), next);
      if (std::isfinite(total)) {
        result.token_id = DrawFromProbs(p, V, w, s.probs.data(), u, s.idx);
      } else {
        result.token_id = DrawSlow(p, V, w, u, s);
      }
      if (inv_t == 1.0f) {
        sum_t1 = total;
        have_sum_t1 = true;
      }
    } else if (const int32_t id =
                   use_k && !ma.unordered ? DrawTopKByLogits(p, V, w, ma.max, inv_t, u, s) : -1;
               id >= 0) {
      result.token_id = id;
    } else {
      // Pass 2: exp with block sums / maxima; the probs are not stored.
      const double total =
          use_k ? ExpSumsMax(w, V, ma.max, inv_t, s.block_sum.data(), s.block_max.data(), next)
                : ExpSums(w, V, ma.max, inv_t, s.block_sum.data(), next);
      if (!std::isfinite(total)) {
        result.token_id = DrawSlow(p, V, w, u, s);
      } else if (use_k) {
        result.token_id = DrawTopK(p, V, w, ma.max, inv_t, u, s);
      } else {
        result.token_id = DrawInverseCdf(w, V, ma.max, inv_t, u * total, s);
      }
      if (inv_t == 1.0f) {
        sum_t1 = total;
        have_sum_t1 = true;
      }
    }
  }

  if (p.logprobs >= 0) {
    const float mx = ma.max;
    const double sum = have_sum_t1 ? sum_t1 : ExpSums(w, V, mx, 1.0f, s.block_sum.data(), nullptr);
    const float lse = mx + static_cast<float>(std::log(sum));
    result.logprobs.logprob = w[result.token_id] - lse;
    const int k = std::min(p.logprobs, V);
    if (k > 0) {
      // Top-k by a bounded insertion list: one pass, no V-sized sort. Once the list is full an
      // element enters only if it is > the last one (it comes later), so runs of 16 that hold
      // none are skipped.
      std::vector<int32_t>& top = s.idx;
      top.clear();
      auto better = [&](int32_t a, int32_t b) { return w[a] != w[b] ? w[a] > w[b] : a < b; };
      for (int i = 0; i < V; ++i) {
        if (static_cast<int>(top.size()) == k) {
          const float th = w[top.back()];
          while (i + 16 <= V && !AnyGreater16(w + i, th)) i += 16;
          if (i >= V) break;
          if (!better(i, top.back())) continue;
        }
        auto pos = std::upper_bound(top.begin(), top.end(), i, better);
        top.insert(pos, i);
        if (static_cast<int>(top.size()) > k) top.pop_back();
      }
      for (int32_t t : top) result.logprobs.top.push_back({t, w[t] - lse});
    }
  }
  return result;
}

}  // namespace

Sampler::Sampler(int vocab_size) : vocab_size_(vocab_size) {}
Sampler::~Sampler() = default;

Sampler::Scratch& Sampler::ScratchFor(int thread) {
  while (static_cast<int>(scratch_.size()) <= thread) {
    scratch_.push_back(std::make_unique<Scratch>());
  }
  return *scratch_[thread];
}

SampleResult Sampler::Sample(const SamplingRow& row) {
  return SampleOne(row, vocab_size_, ScratchFor(0), nullptr);
}

void Sampler::SampleBatch(std::span<const SamplingRow> rows, std::span<SampleResult> results,
                          kernels::cpu::ThreadPool* pool) {
  const int n = static_cast<int>(std::min(rows.size(), results.size()));
  const int threads = pool == nullptr ? 1 : std::min(pool->num_threads(), n);
  if (threads <= 1) {
    Scratch& s = ScratchFor(0);
    for (int i = 0; i < n; ++i) {
      results[i] = SampleOne(rows[i], vocab_size_, s, i + 1 < n ? rows[i + 1].logits : nullptr);
    }
    return;
  }
  ScratchFor(pool->num_threads() - 1);  // every thread's scratch exists before the workers run
  std::atomic<int> next{0};
  pool->Run([&](int t) {
    Scratch& s = *scratch_[t];
    // Rows are claimed one ahead, so the next one can be prefetched during this one.
    int i = next.fetch_add(1, std::memory_order_relaxed);
    while (i < n) {
      const int j = next.fetch_add(1, std::memory_order_relaxed);
      results[i] = SampleOne(rows[i], vocab_size_, s, j < n ? rows[j].logits : nullptr);
      i = j;
    }
  });
}

}  // namespace muse::engine
