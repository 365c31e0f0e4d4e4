#include "kernels/cpu/packed_gemm.h"

#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "kernels/cpu/vec_math.h"

namespace muse::kernels::cpu {
namespace {

// Rows of x per micro-kernel call: 6 rows x 2 vectors = 12 accumulators + 2 weight vectors + 1
// broadcast fit the 16 ymm registers of AVX2.
constexpr int kMaxRows = 6;
// Depth per pass: a 128 x 16 weight slice (8 KiB) and 32 packed rows of x (16 KiB) stay in the
// 32 KiB L1 while every row tile streams past the slice.
constexpr int64_t kDepth = 128;

// Weights are streamed once per step: 2 MiB-aligned and THP-advised, so a stream walks few pages.
float* AllocAligned(int64_t count) {
  constexpr size_t kHuge = 2u << 20;
  const size_t bytes = static_cast<size_t>(count) * 4;
  const size_t align = bytes >= kHuge ? kHuge : 64;
  void* p = std::aligned_alloc(align, (bytes + align - 1) / align * align);
  if (p == nullptr) {
    std::fprintf(stderr, "muse: out of memory packing a %zu-byte weight\n", bytes);
    std::abort();
  }
  if (align == kHuge) madvise(p, (bytes + align - 1) / align * align, MADV_HUGEPAGE);
  return static_cast<float*>(p);
}

// acc[MR x 16] (row-major, contiguous) = (load ? acc : 0) + xp[kc x MR] * b[kc x 16], where xp is
// a row tile of x packed k-major (PackTile), so the broadcasts walk one contiguous stream.
// pf: where to prefetch from, one 64-byte line per k step. Tiles of <= 3 rows keep two sets of
// accumulators (even / odd k), else 2 MR FMA chains of 4-cycle latency could not fill both FMA
// pipes when the weights are cache-resident.
template <int MR>
__attribute__((target("avx2,fma"))) void MicroKernel(const float* xp, const float* b, int64_t kc,
                                                     float* acc, bool load, const float* pf) {
  constexpr int S = MR <= 3 ? 2 : 1;
  __m256 c0[S][MR], c1[S][MR];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    c0[0][r] = load ? _mm256_loadu_ps(acc + int64_t{r} * 16) : _mm256_setzero_ps();
    c1[0][r] = load ? _mm256_loadu_ps(acc + int64_t{r} * 16 + 8) : _mm256_setzero_ps();
#pragma GCC unroll 2
    for (int i = 1; i < S; ++i) c0[i][r] = c1[i][r] = _mm256_setzero_ps();
  }
  int64_t k = 0;
  for (; k + S <= kc; k += S) {
#pragma GCC unroll 2
    for (int i = 0; i < S; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(pf + (k + i) * 16), _MM_HINT_T0);
      const __m256 b0 = _mm256_load_ps(b + (k + i) * 16);
      const __m256 b1 = _mm256_load_ps(b + (k + i) * 16 + 8);
#pragma GCC unroll 6
      for (int r = 0; r < MR; ++r) {
        const __m256 a = _mm256_broadcast_ss(xp + (k + i) * MR + r);
        c0[i][r] = _mm256_fmadd_ps(a, b0, c0[i][r]);
        c1[i][r] = _mm256_fmadd_ps(a, b1, c1[i][r]);
      }
    }
  }
  for (; k < kc; ++k) {  // odd depth with S = 2
    const __m256 b0 = _mm256_load_ps(b + k * 16);
    const __m256 b1 = _mm256_load_ps(b + k * 16 + 8);
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      const __m256 a = _mm256_broadcast_ss(xp + k * MR + r);
      c0[0][r] = _mm256_fmadd_ps(a, b0, c0[0][r]);
      c1[0][r] = _mm256_fmadd_ps(a, b1, c1[0][r]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 2
    for (int i = 1; i < S; ++i) {
      c0[0][r] = _mm256_add_ps(c0[0][r], c0[i][r]);
      c1[0][r] = _mm256_add_ps(c1[0][r], c1[i][r]);
    }
    _mm256_storeu_ps(acc + int64_t{r} * 16, c0[0][r]);
    _mm256_storeu_ps(acc + int64_t{r} * 16 + 8, c1[0][r]);
  }
}

using KernelFn = void (*)(const float*, const float*, int64_t, float*, bool, const float*);
constexpr KernelFn kKernels[kMaxRows + 1] = {nullptr,        MicroKernel<1>, MicroKernel<2>,
                                             MicroKernel<3>, MicroKernel<4>, MicroKernel<5>,
                                             MicroKernel<6>};

// Row tiles of <= 6 rows of near-equal size (M = 32 runs as 6,6,5,5,5,5 rather than
// 6,6,6,6,6,2); tile t is rows [TileBegin(t), TileBegin(t + 1)).
int64_t NumTiles(int64_t m) { return (m + kMaxRows - 1) / kMaxRows; }
int64_t TileBegin(int64_t m, int64_t t) { return m * t / NumTiles(m); }

// xp: x [m, k] (row stride ldx) repacked tile by tile: tile t starts at TileBegin(t) * k and holds
// its mr rows k-major, xp[TileBegin(t) * k + kk * mr + r] = x[TileBegin(t) + r, kk].
void PackTile(const float* x, int64_t m, int64_t ldx, int64_t k, int64_t t, float* xp) {
  const int64_t r0 = TileBegin(m, t), mr = TileBegin(m, t + 1) - r0;
  float* dst = xp + r0 * k;
  for (int64_t r = 0; r < mr; ++r) {
    const float* src = x + (r0 + r) * ldx;
    for (int64_t kk = 0; kk < k; ++kk) dst[kk * mr + r] = src[kk];
  }
}

// tile[m x 16] = x[m, :] * panel from the packed rows. The depth loop is outside the row-tile loop
// so each slice of the panel is read from memory once and then from L1.
void PanelProduct(const float* xp, int64_t m, const float* panel, int64_t k, float* tile) {
  const int64_t tiles = NumTiles(m);
  for (int64_t k0 = 0; k0 < k; k0 += kDepth) {
    const int64_t kc = std::min(kDepth, k - k0);
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t r0 = TileBegin(m, t), mr = TileBegin(m, t + 1) - r0;
      // The panels of one thread are contiguous, so "ahead" runs on into the next slice and the
      // next panel: tile 0 fetches 1 KiB ahead of itself (the whole stream when m <= 6), tile 1
      // fetches the next slice while the slice in L1 serves the remaining tiles.
      const float* b = panel + k0 * kPanel;
      const float* pf = t == 0 ? b + 16 * kPanel : b + kc * kPanel;
      kKernels[mr](xp + r0 * k + k0 * mr, b, kc, tile + r0 * kPanel, k0 > 0, pf);
    }
  }
}

// Per-thread scratch, grown on demand: slot 0 for panel tiles, slot 1 for packed rows.
float* Scratch(int slot, int64_t count) {
  thread_local std::vector<float> buf[2];
  if (static_cast<int64_t>(buf[slot].size()) < count) buf[slot].resize(count);
  return buf[slot].data();
}

// y[0, n) = (accumulate ? y : 0) + t (+ bias), n <= 16.
__attribute__((target("avx2,fma"))) void StoreTile(const float* t, const float* bias,
                                                   bool accumulate, int64_t n, float* y) {
  if (n == kPanel) {
    for (int j = 0; j < kPanel; j += 8) {
      __m256 v = _mm256_loadu_ps(t + j);
      if (bias != nullptr) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + j));
      if (accumulate) v = _mm256_add_ps(v, _mm256_loadu_ps(y + j));
      _mm256_storeu_ps(y + j, v);
    }
    return;
  }
  for (int64_t j = 0; j < n; ++j) {
    float v = t[j];
    if (bias != nullptr) v += bias[j];
    y[j] = accumulate ? y[j] + v : v;
  }
}

// y[0, n) = silu(g) * u = g / (1 + exp(-g)) * u, n <= 16.
__attribute__((target("avx2,fma"))) void StoreSwiGlu(const float* g, const float* u, int64_t n,
                                                     float* y) {
  if (n == kPanel) {
    const __m256 one = _mm256_set1_ps(1.0f);
    for (int j = 0; j < kPanel; j += 8) {
      const __m256 gv = _mm256_loadu_ps(g + j);
      const __m256 den = _mm256_add_ps(one, Exp(_mm256_sub_ps(_mm256_setzero_ps(), gv)));
      _mm256_storeu_ps(y + j, _mm256_mul_ps(_mm256_div_ps(gv, den), _mm256_loadu_ps(u + j)));
    }
    return;
  }
  for (int64_t j = 0; j < n; ++j) y[j] = g[j] / (1.0f + std::exp(-g[j])) * u[j];
}

// The threads pack x's row tiles together, meet, then take `units` (panels or panel pairs) in
// chunks from a shared counter: dynamic hand-out keeps both vCPUs busy when one is slowed by its
// neighbours, and a chunk is still a long contiguous weight stream for the prefetcher.
void RunGemm(const GemmArgs& a, int64_t k, int64_t units, ThreadPool& pool,
             const std::function<void(const float* xp, int64_t u0, int64_t u1)>& body) {
  float* xp = Scratch(1, a.m * k);  // the caller's buffer, shared with the workers for this call
  const int threads = pool.num_threads();
  const int64_t tiles = NumTiles(a.m);
  const int64_t chunk = std::max<int64_t>(1, units / (int64_t{4} * threads));
  std::atomic<int> packed{0};
  std::atomic<int64_t> next{0};
  pool.Run([&](int tid) {
    for (int64_t t = tid; t < tiles; t += threads) PackTile(a.x, a.m, a.ldx, k, t, xp);
    packed.fetch_add(1, std::memory_order_acq_rel);
    for (int spins = 0; packed.load(std::memory_order_acquire) < threads;) SpinPause(spins);
    for (int64_t u0; (u0 = next.fetch_add(chunk, std::memory_order_relaxed)) < units;) {
      body(xp, u0, std::min(units, u0 + chunk));
    }
  });
}

}  // namespace

bool PackedGemmSupported() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

void PackedWeight::Free::operator()(float* p) const { std::free(p); }

PackedWeight PackedWeight::Pack(const float* w, int64_t n, int64_t k) {
  PackedWeight pw;
  pw.n_ = n;
  pw.k_ = k;
  const int64_t panels = pw.num_panels();
  pw.data_.reset(AllocAligned(panels * k * kPanel));
  float* d = pw.data_.get();
  for (int64_t p = 0; p < panels; ++p) {
    for (int64_t kk = 0; kk < k; ++kk) {
      float* dst = d + (p * k + kk) * kPanel;
      for (int64_t j = 0; j < kPanel; ++j) {
        const int64_t row = p * kPanel + j;
        dst[j] = row < n ? w[row * k + kk] : 0.0f;
      }
    }
  }
  return pw;
}

PackedWeight PackSwiGlu(const float* gate, const float* up, int64_t intermediate, int64_t k) {
  const int64_t pairs = (intermediate + kPanel - 1) / kPanel;
  PackedWeight pw;
  pw.n_ = 2 * pairs * kPanel;
  pw.k_ = k;
  pw.swiglu_intermediate_ = intermediate;
  pw.data_.reset(AllocAligned(pw.n_ * k));
  float* d = pw.data_.get();
  for (int64_t p = 0; p < 2 * pairs; ++p) {
    const float* src = (p % 2 == 0) ? gate : up;
    for (int64_t kk = 0; kk < k; ++kk) {
      float* dst = d + (p * k + kk) * kPanel;
      for (int64_t j = 0; j < kPanel; ++j) {
        const int64_t row = (p / 2) * kPanel + j;
        dst[j] = row < intermediate ? src[row * k + kk] : 0.0f;
      }
    }
  }
  return pw;
}

void PackedWeight::CopyRow(int64_t r, float* out) const {
  const float* p = panel(r / kPanel) + r % kPanel;
  for (int64_t kk = 0; kk < k_; ++kk) out[kk] = p[kk * kPanel];
}

void PackedGemm(const GemmArgs& a, const PackedWeight& w, ThreadPool& pool) {
  if (a.m <= 0) return;
  const int64_t n = w.n(), k = w.k();
  RunGemm(a, k, w.num_panels(), pool, [&](const float* xp, int64_t p0, int64_t p1) {
    float* tile = Scratch(0, a.m * kPanel);
    for (int64_t p = p0; p < p1; ++p) {
      PanelProduct(xp, a.m, w.panel(p), k, tile);
      const int64_t c0 = p * kPanel, cols = std::min(kPanel, n - c0);
      const float* bias = a.bias != nullptr ? a.bias + c0 : nullptr;
      for (int64_t r = 0; r < a.m; ++r) {
        StoreTile(tile + r * kPanel, bias, a.accumulate, cols, a.y + r * a.ldy + c0);
      }
    }
  });
}

void PackedGemmSwiGlu(const GemmArgs& a, const PackedWeight& w, ThreadPool& pool) {
  if (a.m <= 0) return;
  const int64_t inter = w.swiglu_intermediate(), k = w.k();
  RunGemm(a, k, w.num_panels() / 2, pool, [&](const float* xp, int64_t q0, int64_t q1) {
    float* gate = Scratch(0, 2 * a.m * kPanel);
    float* up = gate + a.m * kPanel;
    for (int64_t q = q0; q < q1; ++q) {
      PanelProduct(xp, a.m, w.panel(2 * q), k, gate);
      PanelProduct(xp, a.m, w.panel(2 * q + 1), k, up);
      const int64_t c0 = q * kPanel, cols = std::min(kPanel, inter - c0);
      for (int64_t r = 0; r < a.m; ++r) {
        StoreSwiGlu(gate + r * kPanel, up + r * kPanel, cols, a.y + r * a.ldy + c0);
      }
    }
  });
}

}  // namespace muse::kernels::cpu
