// reshape_and_cache: scatter the new K/V of a step into the paged caches through slot_mapping.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype.h"
#include "kernels/kv_layout.h"

namespace muse::kernels {

struct ReshapeAndCacheParams {
  const void* key;    // key: [num_tokens, num_kv_heads, head_dim], row stride key_stride
  const void* value;  // value: [num_tokens, num_kv_heads, head_dim], row stride value_stride
  void* k_cache;      // k_cache: [num_blocks, kKvBlockSize, num_kv_heads, head_dim]
  void* v_cache;      // v_cache: [num_blocks, kKvBlockSize, num_kv_heads, head_dim]
  const int64_t* slot_mapping;  // slot_mapping: [num_tokens], -1 = skip
  int num_tokens = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int64_t key_stride = 0;    // elements between tokens in key (0 = num_kv_heads * head_dim)
  int64_t value_stride = 0;  // elements between tokens in value (0 = num_kv_heads * head_dim)
  DType dtype = DType::kBFloat16;
};

cudaError_t launch_reshape_and_cache(const ReshapeAndCacheParams& p, cudaStream_t stream);

}  // namespace muse::kernels
