// Tuning of the split-K decode kernel, in one place.
#pragma once

#include <algorithm>

namespace muse::kernels::decode {

inline constexpr int kThreads = 128;  // 4 warps per CTA
inline constexpr int kWarps = kThreads / 32;
inline constexpr int kMaxGroup = 8;        // query heads per CTA; larger GQA groups use more CTAs
inline constexpr int kMaxPartition = 512;  // tokens per CTA; sizes the logits buffer in smem
inline constexpr int kMinPartition = 64;

// Halve the partition until the grid has ~2 CTAs per SM: a batch-1 decode must still spread its
// context over the whole GPU to reach copy bandwidth, while long partitions amortise the reduce.
inline int partition_size(int num_ctas_per_partition, int max_seq_len, int num_sms) {
  int part = kMaxPartition;
  while (part > kMinPartition &&
         static_cast<long>(num_ctas_per_partition) * ((max_seq_len + part - 1) / part) <
             2L * num_sms)
    part /= 2;
  return part;
}

}  // namespace muse::kernels::decode
