// Kernel lab (after llm.c dev/cuda): measures the device's copy bandwidth and bf16 GEMM peak
// first, then reports the attention kernels as a fraction of those.
//   decode : bytes/s = (K + V bytes read + q + out) / time, vs D2D copy bandwidth (target >= 0.80)
//   prefill: causal TFLOP/s = 4 * S^2 * D * H / 2 / time (per sequence), vs cuBLAS bf16 GEMM
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cuda/attention.h"

using namespace muse::kernels;

#define CK(x)                                                                                 \
  do {                                                                                        \
    cudaError_t e_ = (x);                                                                     \
    if (e_ != cudaSuccess) {                                                                  \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)

namespace {

// Mean milliseconds per call of f over iters calls (after warmup).
template <typename F>
float time_ms(F&& f, int iters, int warmup = 3) {
  for (int i = 0; i < warmup; ++i) f();
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  CK(cudaEventRecord(a));
  for (int i = 0; i < iters; ++i) f();
  CK(cudaEventRecord(b));
  CK(cudaEventSynchronize(b));
  float ms = 0;
  CK(cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms / iters;
}

double copy_bandwidth() {
  const size_t bytes = size_t(1) << 30;
  void *src, *dst;
  CK(cudaMalloc(&src, bytes));
  CK(cudaMalloc(&dst, bytes));
  CK(cudaMemset(src, 1, bytes));
  const float ms =
      time_ms([&] { CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice)); }, 20);
  cudaFree(src);
  cudaFree(dst);
  return 2.0 * bytes / (ms * 1e-3) / 1e9;  // read + write
}

double gemm_tflops() {
  const int n = 8192;
  const size_t bytes = size_t(n) * n * 2;
  void *a, *b, *c;
  CK(cudaMalloc(&a, bytes));
  CK(cudaMalloc(&b, bytes));
  CK(cudaMalloc(&c, bytes));
  CK(cudaMemset(a, 0x3c, bytes));  // bf16 0x3c3c ~ 0.0115: finite, no denormals
  CK(cudaMemset(b, 0x3c, bytes));
  cublasHandle_t h;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return 0;
  const float alpha = 1.f, beta = 0.f;
  bool ok = true;
  auto run = [&] {
    ok &= cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a, CUDA_R_16BF, n, b,
                       CUDA_R_16BF, n, &beta, c, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                       CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS;
  };
  const float ms = time_ms(run, 20);
  cublasDestroy(h);
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  return ok ? 2.0 * n * double(n) * n / (ms * 1e-3) / 1e12 : 0.0;
}

constexpr int kHeads = 32, kKvHeads = 8, kDim = 128;

struct Cache {
  void *k = nullptr, *v = nullptr;
  size_t blocks = 0;
  bool alloc(size_t num_blocks) {
    const size_t bytes = num_blocks * 16 * kKvHeads * kDim * 2;
    if (cudaMalloc(&k, bytes) != cudaSuccess) return false;
    if (cudaMalloc(&v, bytes) != cudaSuccess) {
      cudaFree(k);
      k = nullptr;
      cudaGetLastError();
      return false;
    }
    CK(cudaMemset(k, 0x3c, bytes));
    CK(cudaMemset(v, 0x3c, bytes));
    blocks = num_blocks;
    return true;
  }
  ~Cache() {
    if (k) cudaFree(k);
    if (v) cudaFree(v);
  }
};

// Shuffled physical blocks, as a long-running server's pool would hand them out.
std::vector<int32_t> block_table(int seqs, int blocks_per_seq, size_t pool, std::mt19937& rng) {
  std::vector<int32_t> ids(pool);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  ids.resize(static_cast<size_t>(seqs) * blocks_per_seq);
  return ids;
}

void bench_decode(double copy_gbs) {
  std::printf(
      "\n## decode attention (bf16, d=128, 32 q / 8 kv heads, block 16, shuffled blocks)\n");
  std::printf("%6s %7s %10s %10s %9s\n", "batch", "ctx", "us", "GB/s", "vs copy");
  const std::vector<int> batches = {1, 8, 32, 64, 128, 256}, ctxs = {512, 2048, 8192, 32768};
  size_t max_tokens = 0;
  for (int b : batches)
    for (int c : ctxs) max_tokens = std::max(max_tokens, size_t(b) * c);
  Cache cache;
  size_t pool = max_tokens / 16;
  while (!cache.alloc(pool)) pool /= 2;  // take what fits
  std::mt19937 rng(1);
  for (int b : batches) {
    for (int c : ctxs) {
      const int bps = c / 16;
      if (size_t(b) * bps > cache.blocks) {
        std::printf("%6d %7d %10s (skipped: KV does not fit)\n", b, c, "-");
        continue;
      }
      const auto bt = block_table(b, bps, cache.blocks, rng);
      std::vector<int32_t> lens(b, c);
      int32_t *dbt, *dlens;
      void *q, *out, *ws = nullptr;
      CK(cudaMalloc(&dbt, bt.size() * 4));
      CK(cudaMalloc(&dlens, lens.size() * 4));
      CK(cudaMemcpy(dbt, bt.data(), bt.size() * 4, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(dlens, lens.data(), lens.size() * 4, cudaMemcpyHostToDevice));
      const size_t qbytes = size_t(b) * kHeads * kDim * 2;
      CK(cudaMalloc(&q, qbytes));
      CK(cudaMalloc(&out, qbytes));
      CK(cudaMemset(q, 0x3c, qbytes));
      PagedDecodeParams p{out, q, cache.k, cache.v, dbt, dlens};
      p.num_seqs = b;
      p.num_heads = kHeads;
      p.num_kv_heads = kKvHeads;
      p.head_dim = kDim;
      p.max_blocks_per_seq = bps;
      p.max_seq_len = c;
      p.scale = 0.088f;
      p.workspace_bytes = paged_decode_workspace_size(p);
      if (p.workspace_bytes) CK(cudaMalloc(&ws, p.workspace_bytes));
      p.workspace = ws;
      const double kv_bytes = double(b) * c * kKvHeads * kDim * 2 * 2;
      const int iters = std::clamp(int(2e10 / (kv_bytes + 1e6)), 5, 200);
      const float ms = time_ms([&] { CK(launch_paged_decode_attention(p, nullptr)); }, iters);
      const double gbs = (kv_bytes + 2.0 * qbytes) / (ms * 1e-3) / 1e9;
      std::printf("%6d %7d %10.1f %10.1f %9.2f\n", b, c, ms * 1e3, gbs, gbs / copy_gbs);
      cudaFree(dbt);
      cudaFree(dlens);
      cudaFree(q);
      cudaFree(out);
      if (ws) cudaFree(ws);
    }
  }
}

void bench_prefill(double gemm) {
  std::printf(
      "\n## prefill attention (bf16, causal, d=128, 32 q / 8 kv heads, K/V read from the paged "
      "cache)\n");
  std::printf("%6s %6s %10s %9s %10s\n", "seqs", "seqlen", "ms", "TFLOP/s", "vs cuBLAS");
  const int total = 16384;
  std::mt19937 rng(2);
  for (int batch_mode = 0; batch_mode < 2; ++batch_mode) {
    for (int s : {1024, 2048, 4096, 8192, 16384}) {
      const int seqs = batch_mode ? total / s : 1;
      if (batch_mode && seqs == 1) continue;  // same as the single-sequence row
      const int bps = s / 16;
      Cache cache;
      if (!cache.alloc(size_t(seqs) * bps)) {
        std::printf("%6d %6d (skipped: out of memory)\n", seqs, s);
        continue;
      }
      const auto bt = block_table(seqs, bps, cache.blocks, rng);
      std::vector<int32_t> lens(seqs, s), qsl(seqs + 1);
      for (int i = 0; i <= seqs; ++i) qsl[i] = i * s;
      int32_t *dbt, *dlens, *dqsl;
      void *q, *out;
      CK(cudaMalloc(&dbt, bt.size() * 4));
      CK(cudaMalloc(&dlens, seqs * 4));
      CK(cudaMalloc(&dqsl, (seqs + 1) * 4));
      CK(cudaMemcpy(dbt, bt.data(), bt.size() * 4, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(dlens, lens.data(), seqs * 4, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(dqsl, qsl.data(), (seqs + 1) * 4, cudaMemcpyHostToDevice));
      const size_t qbytes = size_t(seqs) * s * kHeads * kDim * 2;
      CK(cudaMalloc(&q, qbytes));
      CK(cudaMalloc(&out, qbytes));
      CK(cudaMemset(q, 0x3c, qbytes));
      PagedPrefillParams p{out, q, cache.k, cache.v, dqsl, dlens, dbt};
      p.num_seqs = seqs;
      p.num_heads = kHeads;
      p.num_kv_heads = kKvHeads;
      p.head_dim = kDim;
      p.max_blocks_per_seq = bps;
      p.max_query_len = s;
      p.scale = 0.088f;
      const double flops = double(seqs) * 4.0 * s * double(s) * kDim * kHeads / 2;
      const int iters = std::clamp(int(2e13 / flops), 3, 100);
      const float ms = time_ms([&] { CK(launch_paged_prefill_attention(p, nullptr)); }, iters);
      const double tf = flops / (ms * 1e-3) / 1e12;
      std::printf("%6d %6d %10.3f %9.1f %10.2f\n", seqs, s, ms, tf, gemm > 0 ? tf / gemm : 0.0);
      cudaFree(dbt);
      cudaFree(dlens);
      cudaFree(dqsl);
      cudaFree(q);
      cudaFree(out);
    }
  }
}

}  // namespace

int main() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    std::printf("kernels_bench: no CUDA device\n");
    return 0;
  }
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  int sm_clock = 0, mem_clock = 0, bus = 0;
  cudaDeviceGetAttribute(&sm_clock, cudaDevAttrClockRate, 0);
  cudaDeviceGetAttribute(&mem_clock, cudaDevAttrMemoryClockRate, 0);
  cudaDeviceGetAttribute(&bus, cudaDevAttrGlobalMemoryBusWidth, 0);
  std::printf(
      "machine: %s, %d SMs, sm clock %d MHz, mem clock %d MHz, bus %d bit, %.1f GiB, cc %d.%d\n",
      prop.name, prop.multiProcessorCount, sm_clock / 1000, mem_clock / 1000, bus,
      prop.totalGlobalMem / double(1 << 30), prop.major, prop.minor);
  const double copy = copy_bandwidth();
  std::printf("copy bandwidth (cudaMemcpy D2D 1 GiB, read+write): %.1f GB/s\n", copy);
  const double gemm = gemm_tflops();
  std::printf("cuBLAS bf16 GEMM 8192^3 (fp32 accumulate): %.1f TFLOP/s\n", gemm);
  bench_decode(copy);
  bench_prefill(gemm);
  return 0;
}
