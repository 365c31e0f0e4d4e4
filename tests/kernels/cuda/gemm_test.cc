// launch_gemm (cuBLAS y = x W^T) against an fp64-accumulated CPU reference at odd sizes, with
// 16-bit and fp32 outputs; poisoned outputs first.
#include "kernels/cuda/gemm.h"

#include <cublas_v2.h>

#include "tests/kernels/cuda/test_util.h"

namespace muse::kernels::test {
namespace {

class GemmTest : public ::testing::TestWithParam<std::tuple<DType, bool>> {};

TEST_P(GemmTest, MatchesReferenceWithinDtypeNoise) {
  MUSE_REQUIRE_DEVICE();
  const auto [dt, y_fp32] = GetParam();
  const int64_t m = 7, n = 83, k = 769;
  std::mt19937 rng(31 + static_cast<int>(dt) + y_fp32);
  const auto x = random_values(m * k, dt, rng), w = random_values(n * k, dt, rng);
  auto dx = DeviceBuffer::from(encode(x, dt));
  auto dw = DeviceBuffer::from(encode(w, dt));
  const DType ydt = y_fp32 ? DType::kFloat32 : dt;
  DeviceBuffer dy(m * n * dtype_size(ydt));
  dy.poison();
  cublasHandle_t h = nullptr;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  GemmParams p{dy.get(), dx.get(), dw.get()};
  p.m = m;
  p.n = n;
  p.k = k;
  p.y_fp32 = y_fp32;
  p.dtype = dt;
  EXPECT_EQ(launch_gemm(p, h, nullptr), CUBLAS_STATUS_SUCCESS);
  CUDA_OK(cudaDeviceSynchronize());
  cublasDestroy(h);
  const auto got = decode(dy.to_host<uint8_t>(), ydt);
  std::vector<float> ref(m * n), lowp(m * n);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t q = 0; q < k; ++q) acc += double{x[i * k + q]} * w[j * k + q];
      ref[i * n + j] = static_cast<float>(acc);
      lowp[i * n + j] = round_to(static_cast<float>(acc), ydt);
    }
  }
  expect_within_noise(got, ref, lowp, 1e-3f * std::sqrt(static_cast<float>(k)), "gemm");
}

TEST(GemmTest, EmptyProductIsANoOpAndFp32InputsAreRefused) {
  GemmParams p{nullptr, nullptr, nullptr};
  p.m = 0;
  EXPECT_EQ(launch_gemm(p, nullptr, nullptr), CUBLAS_STATUS_SUCCESS);
  p.m = 1;
  p.dtype = DType::kFloat32;
  EXPECT_EQ(launch_gemm(p, nullptr, nullptr), CUBLAS_STATUS_NOT_SUPPORTED);
}

INSTANTIATE_TEST_SUITE_P(Kernels, GemmTest,
                         ::testing::Combine(::testing::Values(DType::kFloat16, DType::kBFloat16),
                                            ::testing::Bool()),
                         [](const auto& i) {
                           return std::string(dtype_name(std::get<0>(i.param))) +
                                  (std::get<1>(i.param) ? "_to_fp32" : "");
                         });

}  // namespace
}  // namespace muse::kernels::test
