#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/rows.h"
#include "kernels/cuda/static_switch.h"

namespace muse::kernels {
namespace {

// grid: (num_rows, ceil(row_elems / threads)); element-wise copy (rows are short: hidden size).
template <typename T>
__global__ void gather_rows_kernel(GatherRowsParams p, int64_t out_stride, int64_t table_stride) {
  const int row = blockIdx.x;
  const int j = blockIdx.y * blockDim.x + threadIdx.x;
  if (j >= p.row_elems) return;
  const int64_t src = p.indices[row];
  static_cast<T*>(p.out)[row * out_stride + j] =
      static_cast<const T*>(p.table)[src * table_stride + j];
}

template <typename T>
__global__ void add_bias_kernel(AddBiasParams p, int64_t ld) {
  const int row = blockIdx.x;
  const int j = blockIdx.y * blockDim.x + threadIdx.x;
  if (j >= p.cols) return;
  T* x = static_cast<T*>(p.x) + row * ld + j;
  *x = from_float<T>(to_float(*x) + to_float(static_cast<const T*>(p.bias)[j]));
}

constexpr int kThreads = 256;

}  // namespace

cudaError_t launch_gather_rows(const GatherRowsParams& p, cudaStream_t stream) {
  if (p.num_rows == 0) return cudaSuccess;
  if (p.num_rows < 0 || p.row_elems <= 0 || !p.out || !p.table || !p.indices)
    return cudaErrorInvalidValue;
  const int64_t os = p.out_stride ? p.out_stride : p.row_elems;
  const int64_t ts = p.table_stride ? p.table_stride : p.row_elems;
  return MUSE_DTYPE_SWITCH(p.dtype, T, [&] {
    const dim3 grid(p.num_rows, (p.row_elems + kThreads - 1) / kThreads);
    MUSE_LAUNCH(grid, kThreads, 0, stream, gather_rows_kernel<T>)(p, os, ts);
    return cudaGetLastError();
  });
}

cudaError_t launch_add_bias(const AddBiasParams& p, cudaStream_t stream) {
  if (p.num_rows == 0) return cudaSuccess;
  if (p.num_rows < 0 || p.cols <= 0 || !p.x || !p.bias) return cudaErrorInvalidValue;
  const int64_t ld = p.ld ? p.ld : p.cols;
  return MUSE_DTYPE_SWITCH(p.dtype, T, [&] {
    const dim3 grid(p.num_rows, (p.cols + kThreads - 1) / kThreads);
    MUSE_LAUNCH(grid, kThreads, 0, stream, add_bias_kernel<T>)(p, ld);
    return cudaGetLastError();
  });
}

}  // namespace muse::kernels
