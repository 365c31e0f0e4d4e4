// One CTA per row. Thresholds are found by bisection over the order-preserving uint32 key of the
// raw logits (temperature > 0 keeps the order), each probe a full pass with a deterministic
// fixed-tree reduction, so the result is bit-reproducible. Filtering by threshold keeps ties, and
// Gumbel-max sampling needs no sort and no cumulative sum.
#include <cstdint>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/sampling.h"

namespace muse::kernels {
namespace {

constexpr int kThreads = 512;

__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ uint4 philox4x32_10(uint4 c, uint2 k) {
#pragma unroll
  for (int r = 0; r < 10; ++r) {
    const uint32_t lo0 = c.x * 0xD2511F53u, hi0 = __umulhi(c.x, 0xD2511F53u);
    const uint32_t lo1 = c.z * 0xCD9E8D57u, hi1 = __umulhi(c.z, 0xCD9E8D57u);
    c = make_uint4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
    k.x += 0x9E3779B9u;
    k.y += 0xBB67AE85u;
  }
  return c;
}

// Gumbel(0,1) noise for token i of a row; u in (0,1) with 24-bit resolution.
__device__ __forceinline__ float gumbel(uint64_t seed, uint64_t step, int i) {
  const uint4 r =
      philox4x32_10(make_uint4(static_cast<uint32_t>(i), static_cast<uint32_t>(step),
                               static_cast<uint32_t>(step >> 32), 0u),
                    make_uint2(static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)));
  const float u = (static_cast<float>(r.x >> 8) + 0.5f) * (1.0f / 16777216.0f);
  return -logf(-logf(u));
}

__device__ __forceinline__ int block_sum_int(int v, int* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    int x = lane < kThreads / 32 ? scratch[lane] : 0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    if (lane == 0) scratch[32] = x;
  }
  __syncthreads();
  return scratch[32];
}

// (value, index) argmax; larger value wins, then lower index.
__device__ __forceinline__ void better(float& v, int& i, float v2, int i2) {
  if (v2 > v || (v2 == v && i2 < i)) {
    v = v2;
    i = i2;
  }
}

__device__ __forceinline__ int block_argmax(float v, int i, float* sv, int* si) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    better(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
  __syncthreads();
  if (lane == 0) {
    sv[warp] = v;
    si[warp] = i;
  }
  __syncthreads();
  if (warp == 0) {
    float x = -INFINITY;
    int j = INT32_MAX;
    if (lane < kThreads / 32) {
      x = sv[lane];
      j = si[lane];
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
      better(x, j, __shfl_xor_sync(0xffffffffu, x, o), __shfl_xor_sync(0xffffffffu, j, o));
    if (lane == 0) si[32] = j;
  }
  __syncthreads();
  return si[32];
}

__device__ __forceinline__ float clean(float x) { return isnan(x) ? -INFINITY : x; }

__global__ void __launch_bounds__(kThreads) sampling_kernel(SamplingParams p) {
  __shared__ float fscratch[33];
  __shared__ int iscratch[33];
  const int row = blockIdx.x;
  const int V = p.vocab;
  const float* x = p.logits + static_cast<int64_t>(row) * p.logits_stride;

  // raw max / argmax and log-sum-exp (for the returned logprob)
  float bv = -INFINITY;
  int bi = INT32_MAX;
  for (int i = threadIdx.x; i < V; i += kThreads) better(bv, bi, clean(x[i]), i);
  int arg = block_argmax(bv, bi, fscratch, iscratch);
  if (arg == INT32_MAX) arg = 0;  // all -inf / NaN
  const float xmax = clean(x[arg]);
  float se = 0.f;
  for (int i = threadIdx.x; i < V; i += kThreads) se += __expf(clean(x[i]) - xmax);
  const float lse = xmax + logf(block_sum(se, fscratch));

  const float temp = p.temperature[row];
  const int top_k = p.top_k ? p.top_k[row] : 0;
  int id = arg;
  if (temp > 0.f && top_k != 1 && xmax > -INFINITY) {
    const float inv_t = 1.f / temp;
    // top-k: largest key tau with count(key >= tau) >= k
    uint32_t tau = 0;
    if (top_k > 0 && top_k < V) {
      uint32_t lo = 0, hi = order_key(xmax);
      while (lo < hi) {
        const uint32_t mid = lo + static_cast<uint32_t>((static_cast<uint64_t>(hi - lo) + 1) / 2);
        int c = 0;
        for (int i = threadIdx.x; i < V; i += kThreads) c += order_key(clean(x[i])) >= mid;
        if (block_sum_int(c, iscratch) >= top_k)
          lo = mid;
        else
          hi = mid - 1;
      }
      tau = lo;
    }
    // top-p over the survivors: largest tau' >= tau with mass(key >= tau') >= top_p * mass(tau)
    const float top_p = p.top_p ? p.top_p[row] : 1.f;
    if (top_p < 1.f) {
      auto mass = [&](uint32_t t) {
        float s = 0.f;
        for (int i = threadIdx.x; i < V; i += kThreads) {
          const float xi = clean(x[i]);
          if (order_key(xi) >= t) s += __expf((xi - xmax) * inv_t);
        }
        return block_sum(s, fscratch);
      };
      const float target = fmaxf(top_p, 0.f) * mass(tau);
      uint32_t lo = tau, hi = order_key(xmax);
      while (lo < hi) {
        const uint32_t mid = lo + static_cast<uint32_t>((static_cast<uint64_t>(hi - lo) + 1) / 2);
        if (mass(mid) >= target)
          lo = mid;
        else
          hi = mid - 1;
      }
      tau = lo;
    }
    const float min_p = p.min_p ? p.min_p[row] : 0.f;
    const float min_z = min_p > 0.f ? logf(min_p) : -INFINITY;  // (x - xmax) / T >= log(min_p)
    const uint64_t seed = p.seeds[row], step = p.steps[row];
    bv = -INFINITY;
    bi = INT32_MAX;
    for (int i = threadIdx.x; i < V; i += kThreads) {
      const float xi = clean(x[i]);
      const float z = (xi - xmax) * inv_t;
      if (xi == -INFINITY || order_key(xi) < tau || z < min_z) continue;
      better(bv, bi, z + gumbel(seed, step, i), i);
    }
    const int s = block_argmax(bv, bi, fscratch, iscratch);
    if (s != INT32_MAX) id = s;
  }
  if (threadIdx.x == 0) {
    p.out_ids[row] = id;
    if (p.out_logprobs) p.out_logprobs[row] = clean(x[id]) - lse;
  }
}

}  // namespace

cudaError_t launch_sampling(const SamplingParams& in, cudaStream_t stream) {
  SamplingParams p = in;
  if (p.num_rows == 0) return cudaSuccess;
  if (p.num_rows < 0 || p.vocab <= 0 || !p.logits || !p.out_ids || !p.temperature || !p.seeds ||
      !p.steps)
    return cudaErrorInvalidValue;
  if (p.logits_stride == 0) p.logits_stride = p.vocab;
  MUSE_LAUNCH(p.num_rows, kThreads, 0, stream, sampling_kernel)(p);
  return cudaGetLastError();
}

}  // namespace muse::kernels
