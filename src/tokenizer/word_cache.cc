#include "src/tokenizer/word_cache.h"

#include <algorithm>

#include "absl/hash/hash.h"
#include "src/tokenizer/utf8.h"

namespace muse::tokenizer {

WordCache::WordCache(size_t capacity, size_t num_shards)
    : per_shard_(std::max<size_t>(1, capacity / std::max<size_t>(1, num_shards))) {
  for (size_t i = 0; i < std::max<size_t>(1, num_shards); ++i) {
    shards_.push_back(std::make_unique<Shard>());
  }
}

size_t WordCache::ShardOf(std::string_view word) const {
  return absl::HashOf(AbslView(word)) % shards_.size();
}

bool WordCache::Lookup(std::string_view word, std::vector<int32_t>& out) {
  Shard& s = *shards_[ShardOf(word)];
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.map.find(AbslView(word));
  if (it == s.map.end()) return false;
  s.lru.splice(s.lru.begin(), s.lru, it->second.lru);
  out.insert(out.end(), it->second.ids.begin(), it->second.ids.end());
  return true;
}

void WordCache::Insert(std::string_view word, const int32_t* ids, size_t n) {
  Shard& s = *shards_[ShardOf(word)];
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.map.contains(AbslView(word))) return;
  if (s.map.size() >= per_shard_) {
    s.map.erase(s.map.find(AbslView(s.lru.back())));
    s.lru.pop_back();
  }
  auto [it, inserted] = s.map.try_emplace(std::string(word));
  it->second.ids.assign(ids, ids + n);
  s.lru.push_front(it->first);
  it->second.lru = s.lru.begin();
}

}  // namespace muse::tokenizer
