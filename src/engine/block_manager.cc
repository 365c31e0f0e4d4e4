#include "src/engine/block_manager.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace muse::engine {

BlockManager::BlockManager(int num_blocks, bool enable_prefix_caching)
    : num_blocks_(num_blocks), prefix_caching_(enable_prefix_caching), blocks_(num_blocks) {
  free_.reserve(num_blocks);
  // Stack: block 0 is handed out first.
  for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

void BlockManager::LruPushBack(int b) {
  Block& blk = blocks_[b];
  blk.prev = lru_tail_;
  blk.next = -1;
  if (lru_tail_ >= 0) {
    blocks_[lru_tail_].next = b;
  } else {
    lru_head_ = b;
  }
  lru_tail_ = b;
  ++num_evictable_;
}

void BlockManager::LruRemove(int b) {
  Block& blk = blocks_[b];
  if (blk.prev >= 0) {
    blocks_[blk.prev].next = blk.next;
  } else {
    lru_head_ = blk.next;
  }
  if (blk.next >= 0) {
    blocks_[blk.next].prev = blk.prev;
  } else {
    lru_tail_ = blk.prev;
  }
  blk.prev = blk.next = -1;
  --num_evictable_;
}

void BlockManager::Evict(int b) {
  Block& blk = blocks_[b];
  cache_.erase(blk.hash);
  blk.cached = false;
  blk.hash = 0;
}

std::optional<int> BlockManager::Allocate() {
  int b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (lru_head_ >= 0) {
    b = lru_head_;
    LruRemove(b);
    Evict(b);
  } else {
    return std::nullopt;
  }
  blocks_[b].ref = 1;
  return b;
}

void BlockManager::Acquire(int b) {
  Block& blk = blocks_[b];
  if (blk.ref == 0) {
    // Only cached blocks can be revived; a free uncached block holds nothing worth sharing.
    LruRemove(b);
  }
  ++blk.ref;
}

void BlockManager::Release(int b) {
  Block& blk = blocks_[b];
  if (--blk.ref > 0) return;
  if (blk.cached) {
    LruPushBack(b);
  } else {
    free_.push_back(b);
  }
}

std::optional<int> BlockManager::Lookup(const BlockKey& key, uint64_t hash) const {
  if (!prefix_caching_) return std::nullopt;
  auto it = cache_.find(hash);
  if (it == cache_.end() || !(blocks_[it->second].key == key)) return std::nullopt;
  return it->second;
}

bool BlockManager::Cache(int b, const BlockKey& key, uint64_t hash) {
  Block& blk = blocks_[b];
  if (!prefix_caching_ || blk.cached || blk.ref == 0) return false;
  if (!cache_.try_emplace(hash, b).second) return false;
  blk.cached = true;
  blk.key = key;
  blk.hash = hash;
  return true;
}

bool BlockManager::GrowTable(std::vector<int32_t>* table, int64_t num_tokens) {
  const int need = BlocksFor(num_tokens) - static_cast<int>(table->size());
  if (need <= 0) return true;
  if (need > num_free_blocks()) return false;
  for (int i = 0; i < need; ++i) table->push_back(*Allocate());
  return true;
}

void BlockManager::FreeTable(std::vector<int32_t>* table) {
  for (auto it = table->rbegin(); it != table->rend(); ++it) Release(*it);
  table->clear();
}

absl::Status BlockManager::CheckInvariants(
    const std::vector<const std::vector<int32_t>*>& tables) const {
  std::vector<int> refs(num_blocks_, 0);
  for (const auto* t : tables) {
    for (int32_t b : *t) {
      if (b < 0 || b >= num_blocks_) return absl::InternalError(absl::StrCat("bad block ", b));
      ++refs[b];
    }
  }
  std::vector<int> where(num_blocks_, 0);  // 1 = free list, 2 = evictable
  for (int32_t b : free_) {
    if (where[b]) return absl::InternalError(absl::StrCat("block ", b, " twice in free list"));
    where[b] = 1;
  }
  int n_lru = 0;
  for (int b = lru_head_; b >= 0; b = blocks_[b].next) {
    if (where[b]) return absl::InternalError(absl::StrCat("block ", b, " in two free lists"));
    where[b] = 2;
    if (++n_lru > num_blocks_) return absl::InternalError("LRU list has a cycle");
  }
  if (n_lru != num_evictable_) return absl::InternalError("evictable count mismatch");
  for (int b = 0; b < num_blocks_; ++b) {
    const Block& blk = blocks_[b];
    if (blk.ref != refs[b]) {
      return absl::InternalError(
          absl::StrCat("block ", b, " ref ", blk.ref, " but ", refs[b], " tables hold it"));
    }
    const int expect = blk.ref > 0 ? 0 : (blk.cached ? 2 : 1);
    if (where[b] != expect) {
      return absl::InternalError(absl::StrCat("block ", b, " (ref ", blk.ref, ", cached ",
                                              blk.cached, ") in wrong list ", where[b]));
    }
    if (blk.cached) {
      auto it = cache_.find(blk.hash);
      if (it == cache_.end() || it->second != b) {
        return absl::InternalError(absl::StrCat("cached block ", b, " missing from the map"));
      }
    }
  }
  for (const auto& [hash, b] : cache_) {
    if (!blocks_[b].cached || blocks_[b].hash != hash) {
      return absl::InternalError(absl::StrCat("cache map names uncached block ", b));
    }
  }
  return absl::OkStatus();
}

}  // namespace muse::engine
