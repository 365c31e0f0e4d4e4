// The emulator's device side on small kernels with known answers: thread indexing, barriers,
// every warp collective (incl. widths and partial masks), mma.sync against a double loop, launch
// limits, dynamic shared memory, and the aborts that name a divergent or deadlocked warp.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace {

using ::muse::cuda_emu::Launch;

__global__ void index_kernel(int* out) {
  const int tid = threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y;
  const int bid = blockIdx.x + blockIdx.y * gridDim.x + blockIdx.z * gridDim.x * gridDim.y;
  const int n = blockDim.x * blockDim.y * blockDim.z;
  out[bid * n + tid] = bid * 10000 + tid;
}

TEST(CudaEmuDevice, ThreadAndBlockIndicesCoverTheGrid) {
  const dim3 grid(3, 2, 2), block(8, 4, 3);
  const int n = 3 * 2 * 2 * 8 * 4 * 3;
  std::vector<int> out(n, -1);
  Launch("index_kernel", index_kernel, grid, block)(out.data());
  ASSERT_EQ(cudaSuccess, cudaGetLastError());
  for (int i = 0; i < n; ++i) EXPECT_EQ(out[i], (i / 96) * 10000 + i % 96) << i;
}

// Each thread writes its slot, then reads its neighbour's after the barrier; twice, so the second
// phase also checks that the barrier can be reused.
__global__ void barrier_kernel(const float* in, float* out) {
  __shared__ float s[300];
  const int t = threadIdx.x, n = blockDim.x;
  s[t] = in[blockIdx.x * n + t];
  __syncthreads();
  const float a = s[(t + 1) % n];
  __syncthreads();
  s[t] = a * 2.f;
  __syncthreads();
  out[blockIdx.x * n + t] = s[(t + n - 1) % n];
}

TEST(CudaEmuDevice, SyncthreadsOrdersSharedMemoryAcrossWarps) {
  const int n = 300, blocks = 3;
  std::vector<float> in(size_t{n} * blocks), out(size_t{n} * blocks, NAN);
  for (int i = 0; i < n * blocks; ++i) in[i] = 0.5f + i;
  Launch("barrier_kernel", barrier_kernel, dim3(blocks), dim3(n))(in.data(), out.data());
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < n; ++t) EXPECT_EQ(out[b * n + t], 2.f * in[b * n + t]) << b << " " << t;
}

// Threads that exit early no longer count at a later barrier.
__global__ void early_exit_kernel(int* out) {
  __shared__ int s[64];
  const int t = threadIdx.x;
  if (t >= 40) return;
  s[t] = t;
  __syncthreads();
  out[t] = s[39 - t];
}

TEST(CudaEmuDevice, ExitedThreadsDoNotCountAtTheBarrier) {
  std::vector<int> out(40, -1);
  Launch("early_exit_kernel", early_exit_kernel, dim3(1), dim3(64))(out.data());
  for (int t = 0; t < 40; ++t) EXPECT_EQ(out[t], 39 - t);
}

__global__ void shuffle_kernel(const int* in, int* out, int width) {
  const int t = threadIdx.x, lane = t % 32;
  const int v = in[t];
  out[0 * 64 + t] = __shfl_xor_sync(0xffffffffu, v, 5, width);
  out[1 * 64 + t] = __shfl_up_sync(0xffffffffu, v, 3, width);
  out[2 * 64 + t] = __shfl_down_sync(0xffffffffu, v, 3, width);
  out[3 * 64 + t] = __shfl_sync(0xffffffffu, v, lane * 7 + 1, width);
  out[4 * 64 + t] = static_cast<int>(__ballot_sync(0xffffffffu, v % 3 == 0));
  out[5 * 64 + t] = __any_sync(0xffffffffu, v == 1000 + 40);
  out[6 * 64 + t] = __all_sync(0xffffffffu, v >= 1000);
  if (lane < 16) out[7 * 64 + t] = __shfl_xor_sync(0x0000ffffu, v, 1);  // a partial mask
}

TEST(CudaEmuDevice, ShufflesFollowTheirCudaDefinitions) {
  std::vector<int> in(64);
  for (int i = 0; i < 64; ++i) in[i] = 1000 + i * ((i % 5) + 1);
  for (int width : {32, 8}) {
    std::vector<int> out(size_t{8} * 64, -1);
    Launch("shuffle_kernel", shuffle_kernel, dim3(1), dim3(64))(in.data(), out.data(), width);
    for (int t = 0; t < 64; ++t) {
      const int lane = t % 32, base = t - lane, seg = lane / width * width;
      const int x = lane ^ 5;
      EXPECT_EQ(out[t], in[base + (x < seg + width ? x : lane)]) << "xor " << t;
      EXPECT_EQ(out[64 + t], in[base + (lane - seg >= 3 ? lane - 3 : lane)]) << "up " << t;
      EXPECT_EQ(out[128 + t], in[base + (lane - seg + 3 < width ? lane + 3 : lane)]) << "down";
      EXPECT_EQ(out[192 + t], in[base + seg + (lane * 7 + 1) % width]) << "idx " << t;
      unsigned ballot = 0;
      bool any = false, all = true;
      for (int l = 0; l < 32; ++l) {
        ballot |= (in[base + l] % 3 == 0 ? 1u : 0u) << l;
        any |= in[base + l] == 1040;
        all &= in[base + l] >= 1000;
      }
      EXPECT_EQ(static_cast<unsigned>(out[256 + t]), ballot);
      EXPECT_EQ(out[320 + t], any ? 1 : 0);
      EXPECT_EQ(out[384 + t], all ? 1 : 0);
      EXPECT_EQ(out[448 + t], lane < 16 ? in[t ^ 1] : -1);
    }
  }
}

// One warp computes D = A B + C through the m16n8k16 fragment layout of the PTX ISA.
template <bool kBf16>
__global__ void mma_kernel(const uint16_t* a, const uint16_t* b, const float* c, float* d) {
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  auto pair = [](uint16_t lo, uint16_t hi) { return uint32_t{lo} | uint32_t{hi} << 16; };
  const uint32_t af[4] = {pair(a[g * 16 + 2 * t], a[g * 16 + 2 * t + 1]),
                          pair(a[(g + 8) * 16 + 2 * t], a[(g + 8) * 16 + 2 * t + 1]),
                          pair(a[g * 16 + 2 * t + 8], a[g * 16 + 2 * t + 9]),
                          pair(a[(g + 8) * 16 + 2 * t + 8], a[(g + 8) * 16 + 2 * t + 9])};
  // b is [k][n] row-major.
  const uint32_t b0 = pair(b[(2 * t) * 8 + g], b[(2 * t + 1) * 8 + g]);
  const uint32_t b1 = pair(b[(2 * t + 8) * 8 + g], b[(2 * t + 9) * 8 + g]);
  float acc[4] = {c[g * 8 + 2 * t], c[g * 8 + 2 * t + 1], c[(g + 8) * 8 + 2 * t],
                  c[(g + 8) * 8 + 2 * t + 1]};
  if (kBf16) {
    ::muse::cuda_emu::mma_m16n8k16_bf16(acc, af, b0, b1);
  } else {
    ::muse::cuda_emu::mma_m16n8k16_f16(acc, af, b0, b1);
  }
  d[g * 8 + 2 * t] = acc[0];
  d[g * 8 + 2 * t + 1] = acc[1];
  d[(g + 8) * 8 + 2 * t] = acc[2];
  d[(g + 8) * 8 + 2 * t + 1] = acc[3];
}

template <bool kBf16>
void check_mma() {
  std::mt19937 rng(kBf16 ? 7 : 11);
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  auto to16 = [](float f) {
    return kBf16 ? ::muse::cuda_emu::float_to_bf16_bits(f) : ::muse::cuda_emu::float_to_f16_bits(f);
  };
  auto from16 = [](uint16_t h) {
    return kBf16 ? ::muse::cuda_emu::bf16_bits_to_float(h) : ::muse::cuda_emu::f16_bits_to_float(h);
  };
  std::vector<uint16_t> a(256), b(128);
  std::vector<float> c(128), d(128, NAN);
  for (auto& x : a) x = to16(u(rng));
  for (auto& x : b) x = to16(u(rng));
  for (auto& x : c) x = u(rng);
  Launch("mma_kernel", mma_kernel<kBf16>, dim3(1), dim3(32))(a.data(), b.data(), c.data(),
                                                             d.data());
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 8; ++j) {
      double ref = c[i * 8 + j];
      for (int k = 0; k < 16; ++k) ref += double(from16(a[i * 16 + k])) * from16(b[k * 8 + j]);
      EXPECT_NEAR(d[i * 8 + j], ref, 1e-5) << i << "," << j;
    }
  }
}

TEST(CudaEmuDevice, MmaBf16MatchesTheFragmentLayout) { check_mma<true>(); }
TEST(CudaEmuDevice, MmaF16MatchesTheFragmentLayout) { check_mma<false>(); }

__global__ void smem_kernel(unsigned char* out, int bytes) {
  unsigned char* s = static_cast<unsigned char*>(::muse::cuda_emu::dynamic_shared_memory());
  if (threadIdx.x == 0) {
    for (int i = 0; i < bytes; ++i) out[blockIdx.x * bytes + i] = s[i];
    for (int i = 0; i < bytes; ++i) s[i] = 1;  // the next block must see poison again
  }
}

TEST(CudaEmuDevice, DynamicSharedMemoryIsPoisonedAndLimited) {
  const int bytes = 100;
  std::vector<unsigned char> out(size_t{2} * bytes, 0);
  Launch("smem_kernel", smem_kernel, dim3(2), dim3(32), bytes)(out.data(), bytes);
  ASSERT_EQ(cudaSuccess, cudaGetLastError());
  for (unsigned char c : out) EXPECT_EQ(c, 0xcd);

  // 48 KiB without the attribute, as on hardware; more once raised, never past the opt-in max.
  Launch("smem_kernel", smem_kernel, dim3(1), dim3(32), 48 * 1024 + 16)(out.data(), 0);
  EXPECT_EQ(cudaErrorInvalidValue, cudaGetLastError());
  ASSERT_EQ(cudaSuccess, cudaFuncSetAttribute(
                             smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024));
  Launch("smem_kernel", smem_kernel, dim3(1), dim3(32), 48 * 1024 + 16)(out.data(), 0);
  EXPECT_EQ(cudaSuccess, cudaGetLastError());
  EXPECT_EQ(
      cudaErrorInvalidValue,
      cudaFuncSetAttribute(smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 300 * 1024));
}

TEST(CudaEmuDevice, LaunchConfigurationsAreCheckedAgainstDeviceLimits) {
  int dummy[4];
  const dim3 bad_blocks[] = {dim3(1025), dim3(32, 33), dim3(1, 1, 65), dim3(0)};
  for (const dim3& b : bad_blocks) {
    Launch("index_kernel", index_kernel, dim3(1), b)(dummy);
    EXPECT_EQ(cudaErrorInvalidConfiguration, cudaGetLastError()) << b.x << "x" << b.y << "x" << b.z;
  }
  Launch("index_kernel", index_kernel, dim3(1, 65536), dim3(1))(dummy);
  EXPECT_EQ(cudaErrorInvalidConfiguration, cudaGetLastError());
  EXPECT_EQ(cudaSuccess, cudaGetLastError());  // the error was cleared by the read
}

// ---- the aborts: each names what went wrong ----

__global__ void divergent_shuffle_kernel(int* out) {
  int v = threadIdx.x;
  if (threadIdx.x % 32 < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);  // lanes 16..31 never come
  out[threadIdx.x] = v;
}

__global__ void two_shuffles_kernel(int* out) {
  int v = threadIdx.x;
  if (threadIdx.x % 2) {
    v = __shfl_xor_sync(0xffffffffu, v, 1);
  } else {
    v = __shfl_xor_sync(0xffffffffu, v, 2);
  }
  out[threadIdx.x] = v;
}

__global__ void shuffle_vs_barrier_kernel(int* out) {
  int v = threadIdx.x;
  if (threadIdx.x < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
  __syncthreads();
  out[threadIdx.x] = v;
}

__global__ void partial_warp_kernel(int* out) {
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, static_cast<int>(threadIdx.x), 1);
}

__global__ void mask_without_self_kernel(int* out) {
  const unsigned other = 1u << ((threadIdx.x + 1) % 32);  // names the next lane, not itself
  out[threadIdx.x] = __shfl_xor_sync(other, static_cast<int>(threadIdx.x), 1);
}

TEST(CudaEmuDeviceDeathTest, DivergentWarpsAbortWithTheLanesNamed) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  int out[64];
  EXPECT_DEATH(
      Launch("divergent", divergent_shuffle_kernel, dim3(1), dim3(32))(out),
      "kernel divergent block \\(0,0,0\\).*(exited.*__shfl_xor_sync|__shfl_xor_sync.*exited)");
  EXPECT_DEATH(Launch("two", two_shuffles_kernel, dim3(1), dim3(32))(out),
               "reach different collectives");
  EXPECT_DEATH(Launch("barrier", shuffle_vs_barrier_kernel, dim3(1), dim3(32))(out),
               "__syncthreads");
  EXPECT_DEATH(Launch("partial", partial_warp_kernel, dim3(1), dim3(48))(out),
               "names lane 16 of warp 1, which does not exist");
  EXPECT_DEATH(Launch("mask", mask_without_self_kernel, dim3(1), dim3(2))(out),
               "does not include it");
}

TEST(CudaEmuDeviceDeathTest, DeviceBuiltinsOutsideAKernelAbort) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH((void)threadIdx.x, "threadIdx used outside a kernel");
}

}  // namespace
