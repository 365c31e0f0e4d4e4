// Row gather (embedding lookup / logits rows) and bias add against plain CPU loops.
#include "kernels/cuda/rows.h"

#include <numeric>

#include "tests/kernels/cuda/test_util.h"

namespace muse::kernels::test {
namespace {

class RowsTest : public ::testing::TestWithParam<DType> {};

TEST_P(RowsTest, GatherRowsCopiesTheIndexedRowsExactly) {
  MUSE_REQUIRE_DEVICE();
  const DType dt = GetParam();
  const int table_rows = 37, elems = 769, out_rows = 83;
  const int64_t ts = elems + 3, os = elems + 5;  // strided rows on both sides
  std::mt19937 rng(7);
  const auto table = random_values(table_rows * ts, dt, rng);
  std::vector<int32_t> idx(out_rows);
  for (auto& i : idx) i = rng() % table_rows;
  auto dtab = DeviceBuffer::from(encode(table, dt));
  auto didx = DeviceBuffer::from(idx);
  DeviceBuffer out(out_rows * os * dtype_size(dt));
  out.poison();
  GatherRowsParams p{out.get(), dtab.get(), didx.get<int32_t>()};
  p.num_rows = out_rows;
  p.row_elems = elems;
  p.out_stride = os;
  p.table_stride = ts;
  p.dtype = dt;
  CUDA_OK(launch_gather_rows(p, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  const auto got = decode(out.to_host<uint8_t>(), dt);
  for (int r = 0; r < out_rows; ++r) {
    for (int j = 0; j < elems; ++j)
      ASSERT_EQ(got[r * os + j], table[idx[r] * ts + j]) << r << " " << j;
    for (int64_t j = elems; j < os; ++j) ASSERT_TRUE(std::isnan(got[r * os + j]));  // untouched
  }
}

TEST_P(RowsTest, AddBiasMatchesReferenceRounding) {
  MUSE_REQUIRE_DEVICE();
  const DType dt = GetParam();
  const int rows = 7, cols = 1283;
  const int64_t ld = cols + 16;
  std::mt19937 rng(9);
  const auto x = random_values(rows * ld, dt, rng), bias = random_values(cols, dt, rng);
  auto dx = DeviceBuffer::from(encode(x, dt));
  auto db = DeviceBuffer::from(encode(bias, dt));
  AddBiasParams p{dx.get(), db.get()};
  p.num_rows = rows;
  p.cols = cols;
  p.ld = ld;
  p.dtype = dt;
  CUDA_OK(launch_add_bias(p, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  const auto got = decode(dx.to_host<uint8_t>(), dt);
  for (int r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < ld; ++j) {
      const float want = j < cols ? round_to(x[r * ld + j] + bias[j], dt) : x[r * ld + j];
      ASSERT_EQ(got[r * ld + j], want) << r << " " << j;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, RowsTest,
                         ::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16),
                         [](const auto& i) { return std::string(dtype_name(i.param)); });

}  // namespace
}  // namespace muse::kernels::test
