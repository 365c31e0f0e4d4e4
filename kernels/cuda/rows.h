// Row gather (embedding lookup, picking the rows whose logits are wanted) and bias add.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace muse::kernels {

struct GatherRowsParams {
  void* out;               // out: [num_rows, row_elems], row stride out_stride
  const void* table;       // table: [num_table_rows, row_elems], row stride table_stride
  const int32_t* indices;  // indices: [num_rows], each in [0, num_table_rows) (caller-validated)
  int num_rows = 0;
  int row_elems = 0;
  int64_t out_stride = 0;    // 0 = row_elems
  int64_t table_stride = 0;  // 0 = row_elems
  DType dtype = DType::kBFloat16;
};

// out[i, :] = table[indices[i], :]
cudaError_t launch_gather_rows(const GatherRowsParams& p, cudaStream_t stream);

struct AddBiasParams {
  void* x;           // x: [num_rows, cols], row stride ld (in place)
  const void* bias;  // bias: [cols]
  int num_rows = 0;
  int cols = 0;
  int64_t ld = 0;  // 0 = cols
  DType dtype = DType::kBFloat16;
};

// x[i, j] += bias[j] (computed in fp32, rounded once)
cudaError_t launch_add_bias(const AddBiasParams& p, cudaStream_t stream);

}  // namespace muse::kernels
