// KV block pool bookkeeping over the runner's num_kv_blocks(): reference counts, a free list and
// the prefix cache (full blocks keyed by their chained BlockKey, evicted LRU only when no
// uncached free block is left). Owns no KV memory; the runner does. Single-threaded (engine
// thread).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "src/common/status.h"
#include "src/engine/block_hash.h"

namespace muse::engine {

class BlockManager {
 public:
  explicit BlockManager(int num_blocks, bool enable_prefix_caching = true);

  static int BlocksFor(int64_t num_tokens) {
    return static_cast<int>((num_tokens + kernels::kKvBlockSize - 1) / kernels::kKvBlockSize);
  }

  int num_blocks() const { return num_blocks_; }
  // Blocks an allocation can get now: never used + cached-but-unreferenced (evictable).
  int num_free_blocks() const { return static_cast<int>(free_.size()) + num_evictable_; }
  int num_used_blocks() const { return num_blocks_ - num_free_blocks(); }
  int num_cached_blocks() const { return static_cast<int>(cache_.size()); }
  double usage() const { return num_blocks_ == 0 ? 0.0 : double(num_used_blocks()) / num_blocks_; }
  bool prefix_caching() const { return prefix_caching_; }

  int ref_count(int block) const { return blocks_[block].ref; }
  bool is_cached(int block) const { return blocks_[block].cached; }

  // A block with ref 1, preferring never-cached free blocks, else evicting the LRU cached one.
  std::optional<int> Allocate();
  // Another holder of `block` (sharing); revives it from the evictable list when its ref was 0.
  void Acquire(int block);
  // Drops one reference; at 0 a cached block becomes evictable (most recently used), others free.
  void Release(int block);

  // Cached block holding exactly `key` (hash = key.Hash()), or nullopt.
  std::optional<int> Lookup(const BlockKey& key, uint64_t hash) const;
  // Publishes a full, computed, referenced block under `key`. Returns false (block stays private)
  // when caching is off, the block is already cached, or another block already holds the key.
  bool Cache(int block, const BlockKey& key, uint64_t hash);

  // Table helpers. Grow is all-or-nothing: on false nothing changed.
  bool GrowTable(std::vector<int32_t>* table, int64_t num_tokens);
  // Releases in reverse order, so a prefix's tail is evicted before its head; clears the table.
  void FreeTable(std::vector<int32_t>* table);

  // Checks the invariants against the tables of every live sequence: ref == number of table
  // entries naming the block; ref 0 blocks are exactly the free list + evictable list; the cache
  // map and the per-block cached flags agree.
  absl::Status CheckInvariants(const std::vector<const std::vector<int32_t>*>& tables) const;

 private:
  struct Block {
    int ref = 0;
    bool cached = false;       // in cache_ under key
    int prev = -1, next = -1;  // evictable LRU links when ref == 0 && cached
    BlockKey key;
    uint64_t hash = 0;
  };

  void LruPushBack(int block);
  void LruRemove(int block);
  void Evict(int block);

  int num_blocks_;
  bool prefix_caching_;
  std::vector<Block> blocks_;
  std::vector<int32_t> free_;  // ref 0, uncached; used as a stack
  int lru_head_ = -1, lru_tail_ = -1, num_evictable_ = 0;
  absl::flat_hash_map<uint64_t, int32_t> cache_;  // hash -> block
};

}  // namespace muse::engine
