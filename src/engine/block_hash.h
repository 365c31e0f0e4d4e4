// Prefix-cache keys of full KV blocks: a chain, so a block's key names its whole prefix.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "models/batch.h"
#include "src/engine/request.h"

namespace muse::engine {

// Everything that determines the KV of one full block given its prefix.
struct BlockKey {
  uint64_t parent_hash = 0;  // hash of the previous block's key, 0 for the first block
  uint64_t extra = 0;        // digest of non-text content overlapping the block, 0 = none
  std::array<int32_t, kernels::kKvBlockSize> tokens{};

  uint64_t Hash() const;
  bool operator==(const BlockKey& other) const = default;
};

// Key of block `block_index` of `tokens` (which must cover the block fully).
BlockKey MakeBlockKey(const std::vector<int32_t>& tokens, int block_index, uint64_t parent_hash,
                      const std::vector<ContentSpan>& content);

// Extends `hashes` (chained hashes of the leading full blocks of `tokens`) to every full block.
void ExtendBlockHashes(const std::vector<int32_t>& tokens, const std::vector<ContentSpan>& content,
                       std::vector<uint64_t>* hashes);

}  // namespace muse::engine
