// Prefill / chunked-prefill attention over the paged cache with mma.sync tensor cores
// (FlashAttention-2 structure).
//
// CTA = (64-query tile, query head, sequence), 4 warps x 16 query rows. Per 64-token KV tile:
// K and V^T are staged in smem (zero-filled past the context), S = Q K^T stays in registers
// (C fragments), online softmax in fp32, P is rounded to the input type and fed straight back
// as the A operand of O += P V (the C->A fragment identity of m16n8k16).
#include <algorithm>
#include <cstring>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/static_switch.h"

namespace muse::kernels {
namespace {

constexpr int kBM = 64, kBN = 64, kWarps = 4, kThreads = kWarps * 32;

// +8 element padding: a Q/K row is D / 2 + 4 words, which is 4 mod 8 for every D % 16 == 0
// (12 words at D 16, 20 at D 32, 36 at D 64, ...), so row r starts at bank 4 * (odd * r mod 8)
// and the 8 rows x 4 words a fragment load touches fall in 32 distinct banks; V^T rows are
// kBN + 8 = 72 elements (36 words) for every D.
template <int D>
struct PrefillSmem {
  static_assert(D % 16 == 0 && D >= 16, "prefill head dim: whole mma k-steps (16) per row");
  static constexpr int kQS = D + 8, kKS = D + 8, kVS = kBN + 8;
  static constexpr int kQ = 0, kK = kBM * kQS, kV = kK + kBN * kKS;
  static constexpr int kElems = kV + D * kVS;
};

// Two adjacent elements as one 32-bit word (p 4-byte aligned).
template <typename T>
__device__ __forceinline__ uint32_t ld32(const T* p) {
  return load32(p);
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) paged_prefill_kernel(PagedPrefillParams p) {
  using L = PrefillSmem<D>;
  constexpr int kC = D / 8;    // 16-byte chunks per row (2 at D 16: Q, K, V staging loops
                               // are then exactly one pass of the 128 threads)
  constexpr int kKC = D / 16;  // k-steps of QK^T (1 at D 16)
  constexpr int kNO = D / 8;   // n-tiles of O
  MUSE_DYNAMIC_SHARED(unsigned char, smem_raw);
  // Byte buffer viewed as T (pointer conversion only): accesses go through T lvalues or the
  // load16/store16/load32 views of cuda_utils.cuh, never a punned uint4/uint32_t lvalue.
  T* sQ = reinterpret_cast<T*>(smem_raw) + L::kQ;
  T* sK = reinterpret_cast<T*>(smem_raw) + L::kK;
  T* sVt = reinterpret_cast<T*>(smem_raw) + L::kV;

  const int seq = blockIdx.z, head = blockIdx.y;
  const int q_begin = p.query_start_loc[seq];
  const int q_len = p.query_start_loc[seq + 1] - q_begin;
  const int tile0 = blockIdx.x * kBM;
  if (tile0 >= q_len) return;
  const int ctx = p.seq_lens[seq];
  const int cached = ctx - q_len;
  const int rows = min(kBM, q_len - tile0);
  const int kvh = head / (p.num_heads / p.num_kv_heads);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int gr = lane >> 2, tq = lane & 3;

  // ---- Q tile -> smem -> A fragments ----
  const T* qg =
      static_cast<const T*>(p.q) + static_cast<int64_t>(q_begin + tile0) * p.q_stride + head * D;
  for (int i = threadIdx.x; i < kBM * kC; i += kThreads) {
    const int r = i / kC, c = i % kC;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (r < rows) v = load16(qg + r * p.q_stride + c * 8);
    store16(sQ + r * L::kQS + c * 8, v);
  }
  __syncthreads();
  uint32_t qf[kKC][4];
  {
    const T* q0 = sQ + (warp * 16 + gr) * L::kQS + tq * 2;
#pragma unroll
    for (int kc = 0; kc < kKC; ++kc) {
      qf[kc][0] = ld32(q0 + kc * 16);
      qf[kc][1] = ld32(q0 + 8 * L::kQS + kc * 16);
      qf[kc][2] = ld32(q0 + kc * 16 + 8);
      qf[kc][3] = ld32(q0 + 8 * L::kQS + kc * 16 + 8);
    }
  }

  const float scale_log2 = p.scale * 1.4426950408889634f;
  const int cq0 = cached + tile0 + warp * 16 + gr;  // context index of this thread's rows
  const int cq1 = cq0 + 8;
  const int last = cached + tile0 + rows - 1;  // last context index the tile needs
  const int first = p.sliding_window > 0 ? max(0, cached + tile0 - p.sliding_window + 1) : 0;
  const int64_t row_stride = static_cast<int64_t>(p.num_kv_heads) * D;
  const int32_t* bt = p.block_tables + static_cast<int64_t>(seq) * p.max_blocks_per_seq;
  const T* kg = static_cast<const T*>(p.k_cache) + kvh * D;
  const T* vg = static_cast<const T*>(p.v_cache) + kvh * D;

  float o[kNO][4];
#pragma unroll
  for (int n = 0; n < kNO; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;

  for (int kv0 = (first / kBN) * kBN; kv0 <= last; kv0 += kBN) {
    __syncthreads();  // previous tile fully consumed
    for (int i = threadIdx.x; i < kBN * kC; i += kThreads) {
      const int t = i / kC, c = i % kC;
      const int kv = kv0 + t;
      uint4 kw = make_uint4(0, 0, 0, 0), vw = make_uint4(0, 0, 0, 0);
      if (kv <= last) {
        const int64_t off =
            (static_cast<int64_t>(bt[kv / kKvBlockSize]) * kKvBlockSize + kv % kKvBlockSize) *
                row_stride +
            c * 8;
        kw = load16(kg + off);
        vw = load16(vg + off);
      }
      store16(sK + t * L::kKS + c * 8, kw);
      T ve[8];
      memcpy(ve, &vw, sizeof(ve));
#pragma unroll
      for (int j = 0; j < 8; ++j) sVt[(c * 8 + j) * L::kVS + t] = ve[j];
    }
    __syncthreads();

    // S = Q K^T: 16 x 64 per warp as 8 n-tiles.
    float s[kBN / 8][4];
#pragma unroll
    for (int n = 0; n < kBN / 8; ++n) {
      s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
      const T* k0 = sK + (n * 8 + gr) * L::kKS + tq * 2;
#pragma unroll
      for (int kc = 0; kc < kKC; ++kc)
        mma_16816<T>(s[n], qf[kc], ld32(k0 + kc * 16), ld32(k0 + kc * 16 + 8));
    }

    // mask + online softmax (base-2, scaled)
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int n = 0; n < kBN / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = kv0 + n * 8 + tq * 2 + (e & 1);
        const int row = e < 2 ? cq0 : cq1;
        const bool ok = col <= row && (p.sliding_window <= 0 || col > row - p.sliding_window);
        s[n][e] = ok ? s[n][e] * scale_log2 : -INFINITY;
      }
      mx0 = fmaxf(mx0, fmaxf(s[n][0], s[n][1]));
      mx1 = fmaxf(mx1, fmaxf(s[n][2], s[n][3]));
    }
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
    }
    const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
    const float b0 = mn0 == -INFINITY ? 0.f : mn0, b1 = mn1 == -INFINITY ? 0.f : mn1;
    const float a0 = exp2f(m0 - b0), a1 = exp2f(m1 - b1);
    m0 = mn0;
    m1 = mn1;
    float rs0 = 0.f, rs1 = 0.f;
#pragma unroll
    for (int n = 0; n < kBN / 8; ++n) {
      s[n][0] = exp2f(s[n][0] - b0);
      s[n][1] = exp2f(s[n][1] - b0);
      s[n][2] = exp2f(s[n][2] - b1);
      s[n][3] = exp2f(s[n][3] - b1);
      rs0 += s[n][0] + s[n][1];
      rs1 += s[n][2] + s[n][3];
    }
    l0 = l0 * a0 + rs0;
    l1 = l1 * a1 + rs1;
#pragma unroll
    for (int n = 0; n < kNO; ++n) {
      o[n][0] *= a0;
      o[n][1] *= a0;
      o[n][2] *= a1;
      o[n][3] *= a1;
    }

    // O += P V: P from the S fragments (C layout == A layout per 16-column pair).
#pragma unroll
    for (int kc = 0; kc < kBN / 16; ++kc) {
      uint32_t a[4];
      a[0] = pack2<T>(s[2 * kc][0], s[2 * kc][1]);
      a[1] = pack2<T>(s[2 * kc][2], s[2 * kc][3]);
      a[2] = pack2<T>(s[2 * kc + 1][0], s[2 * kc + 1][1]);
      a[3] = pack2<T>(s[2 * kc + 1][2], s[2 * kc + 1][3]);
#pragma unroll
      for (int n = 0; n < kNO; ++n) {
        const T* v0 = sVt + (n * 8 + gr) * L::kVS + kc * 16 + tq * 2;
        mma_16816<T>(o[n], a, ld32(v0), ld32(v0 + 8));
      }
    }
  }

#pragma unroll
  for (int off = 1; off < 4; off <<= 1) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, off);
    l1 += __shfl_xor_sync(0xffffffffu, l1, off);
  }
  const float i0 = l0 > 0.f ? 1.f / l0 : 0.f, i1 = l1 > 0.f ? 1.f / l1 : 0.f;
  const int r0 = warp * 16 + gr, r1 = r0 + 8;
  T* og = static_cast<T*>(p.out) + static_cast<int64_t>(q_begin + tile0) * p.out_stride + head * D +
          tq * 2;
#pragma unroll
  for (int n = 0; n < kNO; ++n) {
    if (r0 < rows) store32(og + r0 * p.out_stride + n * 8, pack2<T>(o[n][0] * i0, o[n][1] * i0));
    if (r1 < rows) store32(og + r1 * p.out_stride + n * 8, pack2<T>(o[n][2] * i1, o[n][3] * i1));
  }
}

template <typename T, int D>
cudaError_t launch_prefill(const PagedPrefillParams& p, cudaStream_t stream) {
  const size_t smem = PrefillSmem<D>::kElems * sizeof(T);
  cudaError_t err =
      cudaFuncSetAttribute(paged_prefill_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(smem));
  if (err != cudaSuccess) return err;
  const dim3 grid((p.max_query_len + kBM - 1) / kBM, p.num_heads, p.num_seqs);
  MUSE_LAUNCH(grid, kThreads, smem, stream, paged_prefill_kernel<T, D>)(p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_paged_prefill_attention(const PagedPrefillParams& in, cudaStream_t stream) {
  PagedPrefillParams p = in;
  if (p.num_seqs == 0 || p.max_query_len == 0) return cudaSuccess;
  if (p.num_seqs < 0 || p.num_heads <= 0 || p.num_kv_heads <= 0 ||
      p.num_heads % p.num_kv_heads != 0 || p.num_seqs > 65535 || p.num_heads > 65535 ||
      p.max_query_len < 0)
    return cudaErrorInvalidValue;
  const int64_t row = static_cast<int64_t>(p.num_heads) * p.head_dim;
  if (p.q_stride == 0) p.q_stride = row;
  if (p.out_stride == 0) p.out_stride = row;
  if (!is_aligned16(p.q) || !is_aligned16(p.k_cache) || !is_aligned16(p.v_cache) ||
      p.q_stride % 8 != 0 || p.out_stride % 2 != 0 || !is_aligned16(p.out))
    return cudaErrorMisalignedAddress;
  return MUSE_HALF_DTYPE_SWITCH(p.dtype, T, [&] {
    return MUSE_HEADDIM_SWITCH(p.head_dim, D, [&] { return launch_prefill<T, D>(p, stream); });
  });
}

}  // namespace muse::kernels
