// The paged KV layout every backend (kernels/cpu, kernels/cuda, the runners) and the engine's block
// manager share. Plain C++: the engine includes it.
//
//   k_cache, v_cache (per layer): [num_blocks, kKvBlockSize, num_kv_heads, head_dim]
//   slot = block_id * kKvBlockSize + offset_in_block; slot -1 = do not write (padding)
//   block_tables: [num_seqs, max_blocks_per_seq] int32, row-major, unused entries -1; context token
//   c of sequence i lives in block block_tables[i * max_blocks_per_seq + c / kKvBlockSize] at
//   offset c % kKvBlockSize.
//
// One block of one layer holds kKvBlockSize tokens x all KV heads, so writing a token is one
// contiguous num_kv_heads * head_dim row, and gathering a sequence is a gather of whole blocks.
#pragma once

namespace muse::kernels {

inline constexpr int kKvBlockSize = 16;

}  // namespace muse::kernels
