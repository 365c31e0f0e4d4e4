// Sharded LRU cache from a pre-token to its BPE ids, shared by all encoding threads.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/node_hash_map.h"

namespace muse::tokenizer {

class WordCache {
 public:
  // `capacity` entries in total, split over `num_shards` independently locked shards.
  WordCache(size_t capacity, size_t num_shards);

  // Appends the cached ids of `word` to `out`; false on a miss.
  bool Lookup(std::string_view word, std::vector<int32_t>& out);
  void Insert(std::string_view word, const int32_t* ids, size_t n);

 private:
  struct Entry {
    std::vector<int32_t> ids;
    std::list<std::string_view>::iterator lru;
  };
  struct Shard {
    std::mutex mu;
    // Keys own the bytes; the LRU list views them (node-stable map keeps views valid).
    absl::node_hash_map<std::string, Entry> map;
    std::list<std::string_view> lru;  // front = most recently used
  };
  size_t ShardOf(std::string_view word) const;

  size_t per_shard_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace muse::tokenizer
