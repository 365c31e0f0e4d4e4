// Device port of engine::Sampler::Sample (src/engine/sampler.cc), operation for operation.
//
// Four kernels per chunk of rows, one CTA per row:
//   modify  : bitmask, masked ids, logit_bias (one thread, list order), penalties (one thread per
//             distinct token), then the row max (order-free for non-NaN values: max is exact and
//             -0/+0 give the same probabilities and lse) and the first index of the max (ArgMax).
//   lanes   : probs = ExpNonPositive((l - max) * inv_t) in tiles of 2048 through shared memory,
//             and every lane sum the host computes, each host lane given to ONE thread that adds
//             sequentially in the host's order (SumOf, the 7 MaskedSums of the threshold search,
//             the min-p survivor mass, the logprob sum, and the SumOf of every 256-block for the
//             inverse CDF); thread 0 then combines lanes in double exactly as the host does and
//             runs the threshold search, or the whole InverseCdf for rows without filters.
//   select  : rows with top-k / top-p / min-p: the candidates (prob >= th && prob > 0) sorted by
//             (prob desc, id asc) -- a strict total order, so any correct sort gives the host's
//             sequence -- by a bitonic sort (shared memory up to 4096 candidates, else the
//             workspace), then thread 0 runs the host's sequential double accumulations.
//   finish  : logprob = l[id] - lse and the top-k alternatives by (logit desc, id asc), k rounds
//             of a block-wide "best strictly after the previous one" reduction.
// Exactness beats speed here: the sequential lane sums are O(V / 8) dependent adds per thread.
//
// No FMA contraction on either side: nvcc contracts a * b + c by default (-fmad=true), so every
// float/double operation here goes through __fadd_rn / __fmul_rn / ... which it never fuses (the
// PTX of this file has no fma.f32; the only fma.f64 are inside CUDA's double log()). The host
// sampler has no fma() call, so none appears here, and it must itself be built without
// contraction: x86-64 baseline (no -march=native), -ffp-contract=off (src/engine/CMakeLists.txt).
// The emulator compiles this file with g++ for x86-64 without -march (no FMA instructions), where
// the plain operators round once each.
#include <cmath>
#include <cstdint>

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/sampling.h"

namespace muse::kernels {
namespace {

constexpr int kThreads = 256;        // modify, lanes, finish
constexpr int kSelectThreads = 512;  // select (bitonic sort)
constexpr int kTile = 2048;          // lanes: elements per shared-memory tile (8 host blocks)
constexpr int kBlock = 256;          // the host InverseCdf's block
constexpr int kSmemKeys = 4096;      // candidates sorted in shared memory (32 KiB)
constexpr int kThresholds = 7;       // 1/16, 2^-12, 2^-20, 2^-28, 2^-36, 2^-44, 0

enum Mode : int32_t { kGreedy = 0, kPlainDraw = 1, kFiltered = 2 };

// Per-row scalars passed between the kernels (workspace).
struct RowState {
  double mass_surv;
  double u;
  float mx;
  float lse;
  float th;
  int32_t argmax;
  int32_t id;
  int32_t n;
  int32_t valid;
  int32_t mode;
};

struct Layout {
  size_t state, work, probs, block_sum, block_last, keys, row_bytes;
};

__host__ __device__ inline size_t round_up256(size_t x) { return (x + 255) / 256 * 256; }

__host__ __device__ inline int next_pow2(int n) {
  int p = 1;
  while (p < n) p <<= 1;
  return p;
}

__host__ __device__ inline Layout layout_for(int vocab) {
  const size_t v = static_cast<size_t>(vocab);
  const size_t nb = (v + kBlock - 1) / kBlock;
  Layout l;
  l.state = 0;
  l.work = round_up256(sizeof(RowState));
  l.probs = l.work + round_up256(v * sizeof(float));
  l.block_sum = l.probs + round_up256(v * sizeof(float));
  l.block_last = l.block_sum + round_up256(nb * sizeof(double));
  l.keys = l.block_last + round_up256(nb * sizeof(int32_t));
  const size_t nkeys = vocab > kSmemKeys ? static_cast<size_t>(next_pow2(vocab)) : 0;
  l.row_bytes = l.keys + round_up256(nkeys * sizeof(uint64_t));
  return l;
}

struct KernelArgs {
  SamplingArgs g;
  Layout layout;
  int row0;  // first row of this chunk
};

// ---- IEEE operations that neither nvcc nor g++ may fuse or reorder ----
#ifdef MUSE_CUDA_EMULATOR
__device__ __forceinline__ float f32_add(float a, float b) { return a + b; }
__device__ __forceinline__ float f32_sub(float a, float b) { return a - b; }
__device__ __forceinline__ float f32_mul(float a, float b) { return a * b; }
__device__ __forceinline__ float f32_div(float a, float b) { return a / b; }
__device__ __forceinline__ double f64_add(double a, double b) { return a + b; }
__device__ __forceinline__ double f64_mul(double a, double b) { return a * b; }
#else
__device__ __forceinline__ float f32_add(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float f32_sub(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ float f32_mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float f32_div(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double f64_add(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ double f64_mul(double a, double b) { return __dmul_rn(a, b); }
#endif

// ---- ports of the host helpers ----

__device__ __forceinline__ uint64_t split_mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// engine::CounterUniform.
__device__ __forceinline__ double counter_uniform(uint64_t seed, uint64_t stream, uint64_t step) {
  uint64_t x = split_mix(seed);
  x = split_mix(x ^ (stream * 0xD1B54A32D192ED03ull));
  x = split_mix(x ^ (step * 0x8CB92BA72F3D8DD7ull));
  return static_cast<double>(x >> 11) * 0x1.0p-53;  // exact: 53-bit integer times a power of 2
}

// The host's ExpNonPositive: Cody-Waite reduction + degree-6 polynomial, unfused. The
// coefficients are the host's 1.0f / 720, ... rounded to float (written out in hex so no compiler
// has to fold the division).
__device__ __forceinline__ float exp_nonpositive(float x) {
  const float xc = x < -87.0f ? -87.0f : x;
  const float kMagic = 12582912.0f;
  const float n = f32_sub(f32_add(f32_mul(xc, 1.44269504f), kMagic), kMagic);
  const float r =
      f32_sub(f32_sub(xc, f32_mul(n, 0.693145751953125f)), f32_mul(n, 1.428606765330187e-06f));
  float p = 0x1.6c16c2p-10f;                   // 1.0f / 720
  p = f32_add(f32_mul(p, r), 0x1.111112p-7f);  // 1.0f / 120
  p = f32_add(f32_mul(p, r), 0x1.555556p-5f);  // 1.0f / 24
  p = f32_add(f32_mul(p, r), 0x1.555556p-3f);  // 1.0f / 6
  p = f32_add(f32_mul(p, r), 0.5f);
  p = f32_add(f32_mul(p, r), 1.0f);
  p = f32_add(f32_mul(p, r), 1.0f);
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  return x < -87.0f ? 0.0f : f32_mul(p, __int_as_float(bits));
}

__device__ __forceinline__ bool row_valid(const SamplingRowParams& p) {
  return isfinite(p.temperature) && p.temperature >= 0.0f && p.top_k >= -1 && p.top_p > 0.0f &&
         p.top_p <= 1.0f && p.min_p >= 0.0f && p.min_p <= 1.0f && p.repetition_penalty > 0.0f &&
         isfinite(p.repetition_penalty) && p.presence_penalty >= -2.0f &&
         p.presence_penalty <= 2.0f && p.frequency_penalty >= -2.0f &&
         p.frequency_penalty <= 2.0f && p.logprobs >= -1 && p.logprobs <= kSamplingMaxTopLogprobs;
}

// The host's threshold sequence: t = 1/16, then t / 256 until it drops below 2^-40, then 0 (7
// values); each probe is at max(t, surv) (std::max(a, b) = a < b ? b : a).
__device__ __forceinline__ float next_threshold(float t) {
  return t < 0x1.0p-40f ? 0.0f : f32_mul(t, 1.0f / 256);
}
__device__ __forceinline__ float probe_threshold(int k, float surv) {
  float t = 1.0f / 16;
  for (int i = 0; i < k; ++i) t = next_threshold(t);
  return t < surv ? surv : t;
}

struct Slot {
  RowState* state;
  float* work;
  float* probs;
  double* block_sum;
  int32_t* block_last;
  uint64_t* keys;
};

__device__ __forceinline__ Slot slot_of(const KernelArgs& a) {
  char* base =
      static_cast<char*>(a.g.workspace) + static_cast<size_t>(blockIdx.x) * a.layout.row_bytes;
  Slot s;
  s.state = static_cast<RowState*>(static_cast<void*>(base + a.layout.state));
  s.work = static_cast<float*>(static_cast<void*>(base + a.layout.work));
  s.probs = static_cast<float*>(static_cast<void*>(base + a.layout.probs));
  s.block_sum = static_cast<double*>(static_cast<void*>(base + a.layout.block_sum));
  s.block_last = static_cast<int32_t*>(static_cast<void*>(base + a.layout.block_last));
  s.keys = static_cast<uint64_t*>(static_cast<void*>(base + a.layout.keys));
  return s;
}

// Tree reduction over blockDim.x (a power of 2) values; every thread gets the result.
template <typename T, typename Op>
__device__ __forceinline__ T block_reduce(T v, T* s, Op op) {
  const int tid = threadIdx.x;
  s[tid] = v;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o >>= 1) {
    if (tid < o) s[tid] = op(s[tid], s[tid + o]);
    __syncthreads();
  }
  const T r = s[0];
  __syncthreads();
  return r;
}

// ---- kernel 1: the logits the host samples from, their max and first argmax ----
__global__ void __launch_bounds__(kThreads) modify_kernel(KernelArgs a) {
  __shared__ float s_f[kThreads];
  __shared__ int s_i[kThreads];
  const SamplingArgs& g = a.g;
  const int row = a.row0 + blockIdx.x, tid = threadIdx.x, V = g.vocab;
  const Slot slot = slot_of(a);
  float* w = slot.work;
  const SamplingRowParams p = g.params[row];
  const float* x = g.logits + static_cast<int64_t>(row) * g.logits_stride;
  const uint32_t* allowed =
      g.allowed_bitmask ? g.allowed_bitmask + static_cast<int64_t>(row) * ((V + 31) / 32) : nullptr;

  for (int i = tid; i < V; i += kThreads) {
    w[i] = (!allowed || (allowed[i >> 5] >> (i & 31)) & 1u) ? x[i] : -INFINITY;
  }
  __syncthreads();
  if (g.masked_offsets) {
    for (int e = g.masked_offsets[row] + tid; e < g.masked_offsets[row + 1]; e += kThreads) {
      const int32_t t = g.masked_ids[e];
      if (t >= 0 && t < V) w[t] = -INFINITY;
    }
  }
  __syncthreads();
  if (g.bias_offsets && tid == 0) {  // in order: a repeated id adds its biases sequentially
    for (int e = g.bias_offsets[row]; e < g.bias_offsets[row + 1]; ++e) {
      const int32_t t = g.bias_ids[e];
      if (t >= 0 && t < V) w[t] = f32_add(w[t], g.bias_values[e]);
    }
  }
  __syncthreads();
  const bool rep = p.repetition_penalty != 1.0f;
  const bool freq = p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
  if ((rep || freq) && g.penalty_offsets) {  // distinct ids: one update each, any order
    for (int e = g.penalty_offsets[row] + tid; e < g.penalty_offsets[row + 1]; e += kThreads) {
      const int32_t t = g.penalty_ids[e];
      if (t < 0 || t >= V) continue;
      float l = w[t];
      if (rep) l = l > 0 ? f32_div(l, p.repetition_penalty) : f32_mul(l, p.repetition_penalty);
      const int32_t c = g.penalty_counts[e];
      if (c > 0) {
        l = f32_sub(
            l, f32_add(p.presence_penalty, f32_mul(p.frequency_penalty, static_cast<float>(c))));
      }
      w[t] = l;
    }
  }
  __syncthreads();

  float m = -INFINITY;
  for (int i = tid; i < V; i += kThreads) m = m > w[i] ? m : w[i];
  const float mx = block_reduce(m, s_f, [](float u, float v) { return u > v ? u : v; });
  int first = INT32_MAX;
  for (int i = tid; i < V; i += kThreads) {
    if (w[i] == mx) {
      first = i;
      break;
    }
  }
  const int am = block_reduce(first, s_i, [](int u, int v) { return u < v ? u : v; });
  if (tid == 0) {
    RowState& st = *slot.state;
    st.valid = row_valid(p);
    st.mx = mx;
    st.argmax = am == INT32_MAX ? 0 : am;  // the host's ArgMax returns 0 when nothing equals max
    const bool use_k = p.top_k > 0 && p.top_k < V;
    const bool filtered = use_k || p.top_p < 1.0f || p.min_p > 0.0f;
    st.mode = p.temperature == 0.0f ? kGreedy : (filtered ? kFiltered : kPlainDraw);
    st.id = st.argmax;
    st.n = 0;
    st.lse = 0.0f;
  }
}

// ---- kernel 2: probabilities and every lane sum, in the host's order ----
enum Role : int { kNone, kSumDraw, kMasked, kSumLogprob, kBlockPart };
constexpr int kAccSlots = 10;  // 0: SumOf(probs), 1: MaskedSum(surv), 2..8: thresholds, 9: lse

__global__ void __launch_bounds__(kThreads) lanes_kernel(KernelArgs a) {
  __shared__ float s_pd[kTile];  // draw probs of the tile
  __shared__ float s_pl[kTile];  // logprob probs of the tile
  __shared__ float s_part[kTile / kBlock][8];
  __shared__ float s_lane[kAccSlots][8];
  __shared__ int s_cnt[kAccSlots][8];
  const SamplingArgs& g = a.g;
  const int row = a.row0 + blockIdx.x, tid = threadIdx.x, V = g.vocab;
  const Slot slot = slot_of(a);
  RowState* st = slot.state;
  if (!st->valid) return;
  const SamplingRowParams p = g.params[row];
  const int mode = st->mode;
  const bool draw = mode != kGreedy, filtered = mode == kFiltered, lp = p.logprobs >= 0;
  if (!draw && !lp) return;
  const float* w = slot.work;
  float* probs = slot.probs;
  const float mx = st->mx;
  const float inv_t = draw ? f32_div(1.0f, p.temperature) : 0.0f;
  const bool use_k = p.top_k > 0 && p.top_k < V;
  const bool use_p = p.top_p < 1.0f;
  const bool use_min_p = p.min_p > 0.0f;
  const float surv = use_min_p ? p.min_p : 0.0f;

  // This thread's job: host lane `lane` of one accumulator, or lane `lane` of one 256-block.
  const int lane = tid & 7;
  Role role = kNone;
  float th = 0.0f;
  if (tid < 8) {
    role = draw ? kSumDraw : kNone;
  } else if (tid < 16) {
    role = filtered && use_min_p ? kMasked : kNone;
    th = surv;
  } else if (tid < 16 + 8 * kThresholds) {
    role = filtered ? kMasked : kNone;
    th = probe_threshold((tid - 16) >> 3, surv);
  } else if (tid < 8 * kAccSlots) {
    role = lp ? kSumLogprob : kNone;
  } else if (tid >= 128 && tid < 128 + 8 * (kTile / kBlock)) {
    role = mode == kPlainDraw ? kBlockPart : kNone;
  }
  const int blk = (tid - 128) >> 3;  // kBlockPart: the tile's 256-block

  float acc = 0.0f;
  int cnt = 0;
  const int V8 = V & ~7;  // the host's lanes cover [0, V8); [V8, V) is its double tail
  for (int base = 0; base < V; base += kTile) {
    const int len = V - base < kTile ? V - base : kTile;
    __syncthreads();  // the previous tile is consumed
    for (int e = tid; e < len; e += kThreads) {
      const float l = w[base + e];
      if (draw) {
        const float pd = exp_nonpositive(f32_mul(f32_sub(l, mx), inv_t));
        s_pd[e] = pd;
        probs[base + e] = pd;
      }
      if (lp) s_pl[e] = exp_nonpositive(f32_sub(l, mx));
    }
    __syncthreads();
    const int len8 = V8 - base < len ? V8 - base : len;  // multiple of 8 (base is)
    if (role == kSumDraw) {
      for (int e = lane; e < len8; e += 8) acc = f32_add(acc, s_pd[e]);
    } else if (role == kSumLogprob) {
      for (int e = lane; e < len8; e += 8) acc = f32_add(acc, s_pl[e]);
    } else if (role == kMasked) {
      for (int e = lane; e < len8; e += 8) {
        const float v = s_pd[e];
        const bool in = v >= th && v > 0;
        acc = f32_add(acc, in ? v : 0.0f);
        cnt += in;
      }
    } else if (role == kBlockPart) {
      const int gb = base + blk * kBlock;
      if (gb < V) {
        const int blen = V - gb < kBlock ? V - gb : kBlock;
        float m = 0.0f;
        for (int e = lane; e < (blen & ~7); e += 8) m = f32_add(m, s_pd[blk * kBlock + e]);
        s_part[blk][lane] = m;
      }
    }
    __syncthreads();
    if (role == kBlockPart && lane == 0) {  // the host's SumOf(probs + b, len) and last > 0
      const int gb = base + blk * kBlock;
      if (gb < V) {
        const int blen = V - gb < kBlock ? V - gb : kBlock;
        const float* x = s_pd + blk * kBlock;
        double r = 0;
        for (int j = 0; j < 8; ++j) r = f64_add(r, s_part[blk][j]);
        for (int e = blen & ~7; e < blen; ++e) r = f64_add(r, x[e]);
        int last = -1;
        for (int e = blen - 1; e >= 0; --e) {
          if (x[e] > 0) {
            last = gb + e;
            break;
          }
        }
        slot.block_sum[gb / kBlock] = r;
        slot.block_last[gb / kBlock] = last;
      }
    }
  }
  __syncthreads();
  if (tid < 8 * kAccSlots) {
    s_lane[tid >> 3][lane] = acc;
    s_cnt[tid >> 3][lane] = cnt;
  }
  __syncthreads();
  if (tid != 0) return;

  // Lanes combined in double in lane order, then the tail, as SumOf / MaskedSum do.
  auto lanes = [&](int s) {
    double r = 0;
    for (int j = 0; j < 8; ++j) r = f64_add(r, s_lane[s][j]);
    return r;
  };
  auto sum_of = [&](int s, const float* x) {
    double r = lanes(s);
    for (int i = V8; i < V; ++i) r = f64_add(r, x[i]);
    return r;
  };
  if (lp) {
    double sum = lanes(9);
    for (int i = V8; i < V; ++i) sum = f64_add(sum, exp_nonpositive(f32_sub(w[i], mx)));
    st->lse = f32_add(mx, static_cast<float>(log(sum)));
  }
  if (!draw) return;
  const double u = counter_uniform(p.seed, static_cast<uint64_t>(p.sample_index),
                                   static_cast<uint64_t>(p.generated));
  if (mode == kPlainDraw) {  // InverseCdf(probs, V, u * SumOf(probs, V))
    const double target = f64_mul(u, sum_of(0, probs));
    double c = 0;
    int32_t last = 0;
    for (int b = 0; b < V; b += kBlock) {
      const int len = V - b < kBlock ? V - b : kBlock;
      const double block = slot.block_sum[b / kBlock];
      if (f64_add(c, block) <= target) {
        c = f64_add(c, block);
        if (block > 0 && slot.block_last[b / kBlock] >= 0) last = slot.block_last[b / kBlock];
        continue;
      }
      for (int i = b; i < b + len; ++i) {
        if (probs[i] <= 0) continue;
        c = f64_add(c, probs[i]);
        last = i;
        if (c > target) {
          st->id = i;
          return;
        }
      }
    }
    st->id = last;
    return;
  }
  // Filtered: mass of the survivors, then the smallest threshold that provably holds the head.
  auto masked = [&](int s, float t, int64_t* count) {
    double r = lanes(s);
    int64_t c = 0;
    for (int j = 0; j < 8; ++j) c += s_cnt[s][j];
    for (int i = V8; i < V; ++i) {
      if (probs[i] >= t && probs[i] > 0) {
        r = f64_add(r, probs[i]);
        ++c;
      }
    }
    *count = c;
    return r;
  };
  int64_t count = 0;
  const double mass_surv = use_min_p ? masked(1, surv, &count) : sum_of(0, probs);
  int k = 0;
  float t = 1.0f / 16;
  for (;; ++k) {
    const float thk = t < surv ? surv : t;
    const double mass = masked(2 + k, thk, &count);
    const bool enough =
        use_k ? count >= p.top_k
              : (use_p ? mass >= f64_mul(static_cast<double>(p.top_p), mass_surv) : t <= surv);
    if (enough || t == 0.0f || k == kThresholds - 1) break;
    t = next_threshold(t);
  }
  st->th = t < surv ? surv : t;
  st->n = static_cast<int32_t>(count);
  st->mass_surv = mass_surv;
  st->u = u;
}

// ---- kernel 3: candidate sort and the host's sequential accumulations ----

// Key ascending = (prob descending, id ascending); probs here are > 0, whose bits order as they do.
__device__ __forceinline__ uint64_t cand_key(float prob, int id) {
  return (static_cast<uint64_t>(~__float_as_uint(prob)) << 32) | static_cast<uint32_t>(id);
}
__device__ __forceinline__ float key_prob(uint64_t k) {
  return __uint_as_float(~static_cast<uint32_t>(k >> 32));
}
__device__ __forceinline__ int key_id(uint64_t k) { return static_cast<int>(k & 0xffffffffu); }

__device__ void bitonic_sort(uint64_t* k, int n) {  // n a power of 2; ascending
  for (int size = 2; size <= n; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int t = threadIdx.x; t < n / 2; t += blockDim.x) {
        const int lo = 2 * t - (t & (stride - 1)), hi = lo + stride;
        const bool up = (lo & size) == 0;
        const uint64_t x = k[lo], y = k[hi];
        if ((x > y) == up) {
          k[lo] = y;
          k[hi] = x;
        }
      }
      __syncthreads();
    }
  }
}

// Thread 0 visits keys[0, m) in order until visit(i, key) returns true; workspace keys are staged
// through shared memory chunk by chunk (coalesced loads instead of one dependent load per key).
template <typename F>
__device__ void scan_keys(const uint64_t* keys, int m, bool staged, uint64_t* stage, int* s_stop,
                          F&& visit) {
  if (!staged) {
    if (threadIdx.x == 0) {
      for (int i = 0; i < m; ++i)
        if (visit(i, keys[i])) break;
    }
    __syncthreads();
    return;
  }
  for (int c = 0; c < m; c += kSmemKeys) {
    const int len = m - c < kSmemKeys ? m - c : kSmemKeys;
    for (int i = threadIdx.x; i < len; i += blockDim.x) stage[i] = keys[c + i];
    __syncthreads();
    if (threadIdx.x == 0) {
      int stop = 0;
      for (int i = 0; i < len; ++i) {
        if (visit(c + i, stage[i])) {
          stop = 1;
          break;
        }
      }
      *s_stop = stop;
    }
    __syncthreads();
    const int stop = *s_stop;
    __syncthreads();
    if (stop) break;
  }
}

__global__ void __launch_bounds__(kSelectThreads) select_kernel(KernelArgs a) {
  __shared__ uint64_t s_keys[kSmemKeys];
  __shared__ int s_count, s_stop, s_m;
  __shared__ double s_total;
  const SamplingArgs& g = a.g;
  const int row = a.row0 + blockIdx.x, tid = threadIdx.x, V = g.vocab;
  const Slot slot = slot_of(a);
  RowState* st = slot.state;
  if (!st->valid || st->mode != kFiltered) return;
  const int n = st->n;
  if (n <= 0) {  // no candidate (all probs NaN or 0): the host returns ArgMax(logits)
    if (tid == 0) st->id = st->argmax;
    return;
  }
  const SamplingRowParams p = g.params[row];
  const int P = next_pow2(n);
  const bool staged = P > kSmemKeys;
  uint64_t* keys = staged ? slot.keys : s_keys;
  const float th = st->th;
  const float* probs = slot.probs;
  if (tid == 0) s_count = 0;
  __syncthreads();
  for (int i = tid; i < V; i += kSelectThreads) {
    const float v = probs[i];
    if (v >= th && v > 0) {
      const int pos = atomicAdd(&s_count, 1);
      if (pos < P) keys[pos] = cand_key(v, i);
    }
  }
  for (int i = n + tid; i < P; i += kSelectThreads) keys[i] = ~0ull;
  __syncthreads();
  bitonic_sort(keys, P);

  const bool use_k = p.top_k > 0 && p.top_k < V;
  const bool use_p = p.top_p < 1.0f;
  if (tid == 0) {
    s_m = use_k ? (n < p.top_k ? n : p.top_k) : n;
    s_total = 0;
  }
  __syncthreads();
  if (use_k) {
    scan_keys(keys, s_m, staged, s_keys, &s_stop, [&](int, uint64_t k) {
      s_total = f64_add(s_total, key_prob(k));
      return false;
    });
  } else if (tid == 0) {
    s_total = st->mass_surv;
  }
  __syncthreads();
  if (use_p) {
    double acc = 0;
    int keep = s_m;
    const double goal = f64_mul(static_cast<double>(p.top_p), s_total);
    scan_keys(keys, s_m, staged, s_keys, &s_stop, [&](int i, uint64_t k) {
      acc = f64_add(acc, key_prob(k));
      if (acc >= goal) {
        keep = i + 1;
        return true;
      }
      return false;
    });
    if (tid == 0) {
      s_m = keep;
      s_total = acc;
    }
    __syncthreads();
  }
  const double target = f64_mul(st->u, s_total);
  double acc = 0;
  int id = -1;
  scan_keys(keys, s_m, staged, s_keys, &s_stop, [&](int, uint64_t k) {
    acc = f64_add(acc, key_prob(k));
    if (acc > target) {
      id = key_id(k);
      return true;
    }
    return false;
  });
  if (tid == 0) st->id = id >= 0 ? id : key_id(keys[s_m - 1]);
}

// ---- kernel 4: outputs, logprob and the top alternatives ----

// The host's order for alternatives: logit descending, then id ascending.
__device__ __forceinline__ bool better(float va, int ia, float vb, int ib) {
  return va != vb ? va > vb : ia < ib;
}

__global__ void __launch_bounds__(kThreads) finish_kernel(KernelArgs a) {
  __shared__ float s_v[kThreads];
  __shared__ int s_i[kThreads];
  const SamplingArgs& g = a.g;
  const int row = a.row0 + blockIdx.x, tid = threadIdx.x, V = g.vocab;
  const Slot slot = slot_of(a);
  const RowState* st = slot.state;
  const SamplingRowParams p = g.params[row];
  const bool valid = st->valid;
  const int k = !valid || p.logprobs < 0 ? 0 : (p.logprobs < V ? p.logprobs : V);
  if (tid == 0) {
    g.out_ids[row] = valid ? st->id : -1;
    if (g.out_logprobs) {
      g.out_logprobs[row] = !valid           ? NAN
                            : p.logprobs < 0 ? 0.0f
                                             : f32_sub(slot.work[st->id], st->lse);
    }
  }
  if (!g.out_top_ids && !g.out_top_logprobs) return;
  const float* w = slot.work;
  float prev_v = 0.0f;
  int prev_i = -1;
  for (int r = 0; r < k; ++r) {  // best element strictly after the previous one
    float bv = 0.0f;
    int bi = -1;
    for (int i = tid; i < V; i += kThreads) {
      const float v = w[i];
      if (prev_i >= 0 && !better(prev_v, prev_i, v, i)) continue;
      if (bi < 0 || better(v, i, bv, bi)) {
        bv = v;
        bi = i;
      }
    }
    s_v[tid] = bv;
    s_i[tid] = bi;
    __syncthreads();
    for (int o = kThreads / 2; o > 0; o >>= 1) {
      if (tid < o) {
        const int j = s_i[tid + o];
        if (j >= 0 && (s_i[tid] < 0 || better(s_v[tid + o], j, s_v[tid], s_i[tid]))) {
          s_v[tid] = s_v[tid + o];
          s_i[tid] = j;
        }
      }
      __syncthreads();
    }
    prev_v = s_v[0];
    prev_i = s_i[0];
    __syncthreads();
    if (tid == 0) {
      const int64_t o = static_cast<int64_t>(row) * kSamplingMaxTopLogprobs + r;
      if (g.out_top_ids) g.out_top_ids[o] = prev_i;
      if (g.out_top_logprobs) g.out_top_logprobs[o] = f32_sub(prev_v, st->lse);
    }
  }
  for (int r = k + tid; r < kSamplingMaxTopLogprobs; r += kThreads) {
    const int64_t o = static_cast<int64_t>(row) * kSamplingMaxTopLogprobs + r;
    if (g.out_top_ids) g.out_top_ids[o] = -1;
    if (g.out_top_logprobs) g.out_top_logprobs[o] = valid ? -INFINITY : NAN;
  }
}

}  // namespace

size_t sampling_workspace_bytes(int rows, int vocab) {
  if (rows <= 0 || vocab <= 0) return 0;
  return static_cast<size_t>(rows) * layout_for(vocab).row_bytes;
}

cudaError_t launch_sampling(const SamplingArgs& in, cudaStream_t stream) {
  if (in.num_rows == 0) return cudaSuccess;
  if (in.num_rows < 0 || in.vocab <= 0 || !in.logits || !in.params || !in.out_ids ||
      !in.workspace || (in.logits_stride != 0 && in.logits_stride < in.vocab))
    return cudaErrorInvalidValue;
  if ((in.masked_offsets && !in.masked_ids) ||
      (in.bias_offsets && (!in.bias_ids || !in.bias_values)) ||
      (in.penalty_offsets && (!in.penalty_ids || !in.penalty_counts)))
    return cudaErrorInvalidValue;
  KernelArgs a;
  a.g = in;
  if (a.g.logits_stride == 0) a.g.logits_stride = in.vocab;
  a.layout = layout_for(in.vocab);
  const size_t chunk_rows = in.workspace_bytes / a.layout.row_bytes;
  if (chunk_rows == 0) return cudaErrorInvalidValue;
  for (int row0 = 0; row0 < in.num_rows; row0 += static_cast<int>(chunk_rows)) {
    const int rows = static_cast<int>(
        chunk_rows < static_cast<size_t>(in.num_rows - row0) ? chunk_rows : in.num_rows - row0);
    a.row0 = row0;
    MUSE_LAUNCH(rows, kThreads, 0, stream, modify_kernel)(a);
    MUSE_LAUNCH(rows, kThreads, 0, stream, lanes_kernel)(a);
    MUSE_LAUNCH(rows, kSelectThreads, 0, stream, select_kernel)(a);
    MUSE_LAUNCH(rows, kThreads, 0, stream, finish_kernel)(a);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

}  // namespace muse::kernels
