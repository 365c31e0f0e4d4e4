// The NCCL communicator (issue 20) on real GPUs: one rank (every collective against its
// definition), and two ranks as threads when the machine has two GPUs. Skips without a device;
// scripts/device_checks.sh runs it on GPU machines.
#include "src/runtime/cuda/nccl_communicator.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <random>
#include <thread>
#include <vector>

#include "src/collective/gloo_communicator.h"

namespace muse::runtime {
namespace {

int DeviceCount() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

std::vector<float> Values(int rank, int n) {
  std::mt19937 rng(rank + 1);
  std::uniform_real_distribution<float> u(0.5f, 1.5f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// Runs the checks on `size` ranks, rank r on GPU r.
void CheckRanks(int size) {
  const std::string store = ::testing::TempDir() + "/nccl_store_" + std::to_string(getpid());
  std::vector<std::thread> threads;
  const int n = 1001;
  for (int r = 0; r < size; ++r) {
    threads.emplace_back([&, r] {
      collective::GlooOptions g{.rank = r, .size = size, .store_dir = store};
      auto boot = collective::ConnectGloo(g);
      ASSERT_TRUE(boot.ok()) << boot.status();
      ASSERT_EQ(cudaSetDevice(r), cudaSuccess);
      auto comm = ConnectNccl(**boot, r, nullptr);
      ASSERT_TRUE(comm.ok()) << comm.status();
      float *d = nullptr, *gathered = nullptr;
      ASSERT_EQ(cudaMalloc(&d, n * sizeof(float)), cudaSuccess);
      ASSERT_EQ(cudaMalloc(&gathered, size * n * sizeof(float)), cudaSuccess);
      const std::vector<float> mine = Values(r, n);
      cudaMemcpy(d, mine.data(), n * sizeof(float), cudaMemcpyHostToDevice);
      ASSERT_TRUE((*comm)->AllGather(d, n, gathered).ok());
      std::vector<float> all(size * n);
      cudaMemcpy(all.data(), gathered, all.size() * sizeof(float), cudaMemcpyDeviceToHost);
      for (int q = 0; q < size; ++q) {
        EXPECT_EQ(std::vector<float>(all.begin() + q * n, all.begin() + (q + 1) * n), Values(q, n));
      }
      ASSERT_TRUE((*comm)->AllReduceSum(d, n).ok());
      std::vector<float> sum(n);
      cudaMemcpy(sum.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost);
      for (int i = 0; i < n; ++i) {
        double want = 0;
        for (int q = 0; q < size; ++q) want += all[q * n + i];
        EXPECT_NEAR(sum[i], want, 1e-5 * size) << i;
      }
      cudaMemcpy(d, mine.data(), n * sizeof(float), cudaMemcpyHostToDevice);
      ASSERT_TRUE((*comm)->Broadcast(d, n * sizeof(float), size - 1).ok());
      std::vector<float> got(n);
      cudaMemcpy(got.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost);
      EXPECT_EQ(got, Values(size - 1, n));
      EXPECT_TRUE((*comm)->Barrier().ok());
      EXPECT_EQ((*comm)->Broadcast(d, 4, size).code(), absl::StatusCode::kInvalidArgument);
      cudaFree(d);
      cudaFree(gathered);
    });
  }
  for (auto& t : threads) t.join();
}

TEST(NcclCommunicator, OneRank) {
  if (DeviceCount() < 1) GTEST_SKIP() << "no CUDA device";
  CheckRanks(1);
}

TEST(NcclCommunicator, TwoRanksOnTwoGpus) {
  if (DeviceCount() < 2) GTEST_SKIP() << "needs two CUDA devices";
  CheckRanks(2);
}

}  // namespace
}  // namespace muse::runtime
