// Element types the kernels are instantiated for. Plain C++ so engine code can include it.
#pragma once

#include <cstddef>

namespace muse::kernels {

enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

inline constexpr size_t dtype_size(DType t) { return t == DType::kFloat32 ? 4 : 2; }

// Paged KV layout shared with src/runtime/batch.h:
//   k_cache, v_cache: [num_blocks, kKvBlockSize, num_kv_heads, head_dim]
//   slot = block_id * kKvBlockSize + offset_in_block; slot -1 = skip (padding)
//   block_tables: [num_seqs, max_blocks_per_seq] int32, context token c of seq i lives in
//   block block_tables[i * max_blocks_per_seq + c / kKvBlockSize] at offset c % kKvBlockSize.
inline constexpr int kKvBlockSize = 16;

}  // namespace muse::kernels
