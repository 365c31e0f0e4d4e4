// Split-K paged decode attention (flash-decoding), GQA-aware.
//
// CTA = (partition, kv head [x chunk of <= kMaxGroup query heads], sequence). It reads each K/V
// row of its partition once for all query heads of the group:
//   pass 1: q·k for every (head, token) -> logits in smem (fp32)
//   softmax over the partition (max, exp, sum) in smem
//   pass 2: sum_t p[h][t] * v[t] in fp32 registers, reduced over warps through smem.
// A lane owns one 8-element (128-bit for 16-bit types) chunk of a K/V row; LPT lanes cover a row,
// so a warp reads 32/LPT rows per step with fully coalesced 128-bit loads.
// With more than one partition the CTA writes (max, sum, normalised out) and a reduce kernel
// combines partitions with weights sum_p * exp(max_p - max).
#include <algorithm>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/decode_tile.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/static_switch.h"

namespace muse::kernels {
namespace {

using namespace decode;

// LPT = the power of two >= kChunks, at least 2 (the shuffle trees below need a power of two):
// 2 lanes per token at D 16 (16 tokens per warp step), 4 at D 32 (8), 8 at D 64 (4), 16 at
// D 80..128 (2; lanes past kChunks idle).
template <int D>
struct DecodeShape {
  static_assert(D % 8 == 0 && D >= 16 && D <= 128, "decode head dim");
  static constexpr int kChunks = D / 8;  // 2, 4, 8, 10, 12, 16
  static constexpr int kLanesPerToken = kChunks <= 2 ? 2 : kChunks <= 4 ? 4 : kChunks <= 8 ? 8 : 16;
  static constexpr int kTokensPerStep = 32 / kLanesPerToken;
  static constexpr int kSteps = kKvBlockSize / kTokensPerStep;
  static_assert(kKvBlockSize % kTokensPerStep == 0, "a warp step must not straddle KV blocks");
};

struct DecodeGrid {
  int partition_size;
  int num_partitions;
  int head_chunks;
};

int num_sms() {
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return 132;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) return 132;
  return sms;
}

DecodeGrid plan(const PagedDecodeParams& p) {
  DecodeGrid g;
  const int group = p.num_heads / p.num_kv_heads;
  g.head_chunks = (group + kMaxGroup - 1) / kMaxGroup;
  g.partition_size =
      partition_size(p.num_seqs * p.num_kv_heads * g.head_chunks, p.max_seq_len, num_sms());
  g.num_partitions = std::max(1, (p.max_seq_len + g.partition_size - 1) / g.partition_size);
  return g;
}

// Workspace: tmp_out [num_seqs, num_heads, P, D] f32, then max and sum [num_seqs, num_heads, P].
size_t workspace_bytes(const PagedDecodeParams& p, const DecodeGrid& g) {
  if (g.num_partitions <= 1) return 0;
  const size_t rows = static_cast<size_t>(p.num_seqs) * p.num_heads * g.num_partitions;
  return rows * (p.head_dim + 2) * sizeof(float);
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads)
    paged_decode_kernel(PagedDecodeParams p, int partition_size, int num_partitions,
                        int head_chunks) {
  using S = DecodeShape<D>;
  constexpr int LPT = S::kLanesPerToken, TPS = S::kTokensPerStep, STEPS = S::kSteps;
  __shared__ float s_logits[kMaxGroup][kMaxPartition];
  __shared__ float s_red[kWarps][kMaxGroup][D];
  __shared__ float s_max[kMaxGroup], s_sum[kMaxGroup];

  const int seq = blockIdx.z;
  const int kvh = blockIdx.y / head_chunks, chunk = blockIdx.y % head_chunks;
  const int group = p.num_heads / p.num_kv_heads;
  const int h0 = kvh * group + chunk * kMaxGroup;
  const int gn = min(kMaxGroup, group - chunk * kMaxGroup);
  const int part = blockIdx.x;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int sub = lane / LPT, cl = lane % LPT;
  const bool has_chunk = cl < S::kChunks;

  const int ctx = p.seq_lens[seq];
  const int lo = p.sliding_window > 0 ? max(0, ctx - p.sliding_window) : 0;
  const int start = part * partition_size;
  const int end = min(ctx, start + partition_size);
  const int begin = max(start, lo);
  const bool split = num_partitions > 1;
  float* ws_out = static_cast<float*>(p.workspace);
  const size_t ws_rows = static_cast<size_t>(p.num_seqs) * p.num_heads * num_partitions;
  float* ws_max = ws_out + ws_rows * D;
  float* ws_sum = ws_max + ws_rows;

  if (begin >= end) {  // nothing to attend in this partition (or empty context)
    if (split) {
      if (static_cast<int>(threadIdx.x) < gn) {
        const size_t row =
            (static_cast<size_t>(seq) * p.num_heads + h0 + threadIdx.x) * num_partitions + part;
        ws_max[row] = -INFINITY;
        ws_sum[row] = 0.f;
      }
    } else {
      T* out = static_cast<T*>(p.out) + (static_cast<int64_t>(seq) * p.num_heads + h0) * D;
      for (int i = threadIdx.x; i < gn * D; i += kThreads) out[i] = from_float<T>(0.f);
    }
    return;
  }

  // q of the group's heads, pre-scaled, as this lane's 8-element chunk.
  float q[kMaxGroup][8];
  const T* qp = static_cast<const T*>(p.q) + (static_cast<int64_t>(seq) * p.num_heads + h0) * D;
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    if (g < gn && has_chunk) {
      chunk8_to_float(load_chunk8(qp + g * D + cl * 8), q[g]);
#pragma unroll
      for (int j = 0; j < 8; ++j) q[g][j] *= p.scale;
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) q[g][j] = 0.f;
    }
  }

  const int64_t row_stride = static_cast<int64_t>(p.num_kv_heads) * D;  // between tokens
  const int32_t* bt = p.block_tables + static_cast<int64_t>(seq) * p.max_blocks_per_seq;
  const int blk_first = begin / kKvBlockSize, blk_last = (end - 1) / kKvBlockSize;
  const T* kbase = static_cast<const T*>(p.k_cache) + kvh * D + cl * 8;
  const T* vbase = static_cast<const T*>(p.v_cache) + kvh * D + cl * 8;

  // ---- pass 1: logits ----
  for (int blk = blk_first + warp; blk <= blk_last; blk += kWarps) {
    const int64_t phys = bt[blk];
    const T* kb = kbase + phys * kKvBlockSize * row_stride;
    Chunk8<T> kr[STEPS];
#pragma unroll
    for (int s = 0; s < STEPS; ++s)
      kr[s] = has_chunk ? load_chunk8(kb + (s * TPS + sub) * row_stride) : zero_chunk8<T>();
#pragma unroll
    for (int s = 0; s < STEPS; ++s) {
      float k[8];
      chunk8_to_float(kr[s], k);
      const int tok = blk * kKvBlockSize + s * TPS + sub;
      const bool valid = tok >= begin && tok < end;
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g) {
        if (g >= gn) break;  // uniform across the CTA
        float d = 0.f;
#pragma unroll
        for (int j = 0; j < 8; ++j) d = fmaf(q[g][j], k[j], d);
#pragma unroll
        for (int o = LPT / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
        if (cl == 0) s_logits[g][tok - start] = valid ? d : -INFINITY;
      }
    }
  }
  __syncthreads();

  // ---- softmax over the partition ----
  const int i0 = blk_first * kKvBlockSize - start, i1 = end - start;
  for (int g = warp; g < gn; g += kWarps) {
    float m = -INFINITY;
    for (int i = i0 + lane; i < i1; i += 32) m = fmaxf(m, s_logits[g][i]);
    m = warp_max(m);
    float sum = 0.f;
    for (int i = i0 + lane; i < i1; i += 32) {
      const float e = __expf(s_logits[g][i] - m);
      s_logits[g][i] = e;
      sum += e;
    }
    sum = warp_sum(sum);
    if (lane == 0) {
      s_max[g] = m;
      s_sum[g] = sum;
    }
  }
  __syncthreads();

  // ---- pass 2: p · V ----
  float acc[kMaxGroup][8];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[g][j] = 0.f;
  for (int blk = blk_first + warp; blk <= blk_last; blk += kWarps) {
    const int64_t phys = bt[blk];
    const T* vb = vbase + phys * kKvBlockSize * row_stride;
    Chunk8<T> vr[STEPS];
#pragma unroll
    for (int s = 0; s < STEPS; ++s)
      vr[s] = has_chunk ? load_chunk8(vb + (s * TPS + sub) * row_stride) : zero_chunk8<T>();
#pragma unroll
    for (int s = 0; s < STEPS; ++s) {
      const int tok = blk * kKvBlockSize + s * TPS + sub;
      if (tok < begin || tok >= end) continue;  // rows past the context may hold garbage (NaN)
      float v[8];
      chunk8_to_float(vr[s], v);
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g) {
        if (g >= gn) break;
        const float pr = s_logits[g][tok - start];
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[g][j] = fmaf(pr, v[j], acc[g][j]);
      }
    }
  }
  // Reduce over the token sub-groups of the warp, then over warps in smem.
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    if (g >= gn) break;
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int o = LPT; o < 32; o <<= 1) acc[g][j] += __shfl_xor_sync(0xffffffffu, acc[g][j], o);
    if (sub == 0 && has_chunk)
#pragma unroll
      for (int j = 0; j < 8; ++j) s_red[warp][g][cl * 8 + j] = acc[g][j];
  }
  __syncthreads();

  for (int i = threadIdx.x; i < gn * D; i += kThreads) {
    const int g = i / D, d = i % D;
    float o = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) o += s_red[w][g][d];
    o /= s_sum[g];
    const int64_t head_row = static_cast<int64_t>(seq) * p.num_heads + h0 + g;
    if (split) {
      ws_out[(head_row * num_partitions + part) * D + d] = o;
    } else {
      static_cast<T*>(p.out)[head_row * D + d] = from_float<T>(o);
    }
  }
  if (split && static_cast<int>(threadIdx.x) < gn) {
    const size_t row =
        (static_cast<size_t>(seq) * p.num_heads + h0 + threadIdx.x) * num_partitions + part;
    ws_max[row] = s_max[threadIdx.x];
    ws_sum[row] = s_sum[threadIdx.x];
  }
}

// grid: (num_heads, num_seqs); dynamic smem: 2 * num_partitions floats.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads)
    paged_decode_reduce_kernel(PagedDecodeParams p, int num_partitions) {
  MUSE_DYNAMIC_SHARED(float, s_w);  // [num_partitions] weights
  __shared__ float scratch[33];
  const int head = blockIdx.x, seq = blockIdx.y;
  const size_t ws_rows = static_cast<size_t>(p.num_seqs) * p.num_heads * num_partitions;
  const float* ws_out = static_cast<const float*>(p.workspace);
  const float* ws_max = ws_out + ws_rows * D;
  const float* ws_sum = ws_max + ws_rows;
  const size_t row0 = (static_cast<size_t>(seq) * p.num_heads + head) * num_partitions;

  float m = -INFINITY;
  for (int i = threadIdx.x; i < num_partitions; i += kThreads)
    if (ws_sum[row0 + i] > 0.f) m = fmaxf(m, ws_max[row0 + i]);
  m = block_max(m, scratch);
  float tot = 0.f;
  for (int i = threadIdx.x; i < num_partitions; i += kThreads) {
    const float s = ws_sum[row0 + i];
    const float w = s > 0.f ? s * __expf(ws_max[row0 + i] - m) : 0.f;
    s_w[i] = w;
    tot += w;
  }
  tot = block_sum(tot, scratch);  // also orders the s_w writes before the reads below
  const float inv = tot > 0.f ? 1.f / tot : 0.f;
  T* out = static_cast<T*>(p.out) + (static_cast<int64_t>(seq) * p.num_heads + head) * D;
  for (int d = threadIdx.x; d < D; d += kThreads) {
    float o = 0.f;
    for (int i = 0; i < num_partitions; ++i)
      if (s_w[i] > 0.f) o = fmaf(s_w[i], ws_out[(row0 + i) * D + d], o);
    out[d] = from_float<T>(o * inv);
  }
}

template <typename T, int D>
cudaError_t launch_decode(const PagedDecodeParams& p, const DecodeGrid& g, cudaStream_t stream) {
  const dim3 grid(g.num_partitions, p.num_kv_heads * g.head_chunks, p.num_seqs);
  MUSE_LAUNCH(grid, kThreads, 0, stream, paged_decode_kernel<T, D>)
  (p, g.partition_size, g.num_partitions, g.head_chunks);
  if (g.num_partitions > 1) {
    const size_t smem = static_cast<size_t>(g.num_partitions) * sizeof(float);
    if (smem > 48 * 1024) return cudaErrorInvalidValue;  // > 12k partitions: ~6M-token context
    MUSE_LAUNCH(dim3(p.num_heads, p.num_seqs), kThreads, smem, stream,
                paged_decode_reduce_kernel<T, D>)
    (p, g.num_partitions);
  }
  return cudaGetLastError();
}

bool valid(const PagedDecodeParams& p) {
  return p.num_seqs >= 0 && p.num_heads > 0 && p.num_kv_heads > 0 &&
         p.num_heads % p.num_kv_heads == 0 && p.max_seq_len >= 0 && p.num_seqs <= 65535 &&
         p.num_kv_heads * ((p.num_heads / p.num_kv_heads + kMaxGroup - 1) / kMaxGroup) <= 65535;
}

}  // namespace

size_t paged_decode_workspace_size(const PagedDecodeParams& p) {
  if (!valid(p) || p.num_seqs == 0) return 0;
  return workspace_bytes(p, plan(p));
}

cudaError_t launch_paged_decode_attention(const PagedDecodeParams& p, cudaStream_t stream) {
  if (!valid(p)) return cudaErrorInvalidValue;
  if (p.num_seqs == 0) return cudaSuccess;
  const DecodeGrid g = plan(p);
  if (workspace_bytes(p, g) > p.workspace_bytes || (g.num_partitions > 1 && !p.workspace))
    return cudaErrorInvalidValue;
  if (!is_aligned16(p.q) || !is_aligned16(p.k_cache) || !is_aligned16(p.v_cache))
    return cudaErrorMisalignedAddress;
  return MUSE_DTYPE_SWITCH(p.dtype, T, [&] {
    return MUSE_HEADDIM_SWITCH(p.head_dim, D, [&] { return launch_decode<T, D>(p, g, stream); });
  });
}

}  // namespace muse::kernels
