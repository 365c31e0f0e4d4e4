// Image digest -> projected image embeddings, LRU-bounded in bytes, thread-safe (server threads
// look up and insert; the encoder may run elsewhere). Plain C++, no libtorch.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "src/vision/image_input.h"

namespace muse::vision {

// Projected features of one image: [num_tokens, hidden_size] fp32, immutable once shared.
struct ImageEmbedding {
  int32_t num_tokens = 0;
  int32_t hidden_size = 0;
  ImageDigest digest;
  std::shared_ptr<const std::vector<float>> data;
  int64_t bytes() const { return data ? static_cast<int64_t>(data->size() * sizeof(float)) : 0; }
};

class EncoderCache {
 public:
  explicit EncoderCache(int64_t capacity_bytes) : capacity_bytes_(capacity_bytes) {}

  // Returns the entry and marks it most recently used; nullopt (a miss) when absent.
  std::optional<ImageEmbedding> Lookup(const ImageDigest& digest);
  // Inserts or replaces, evicting least recently used entries until the total fits. An entry
  // larger than the whole capacity is not cached (returns false). Evicted embeddings stay valid
  // for holders of their shared_ptr.
  bool Insert(const ImageEmbedding& embedding);

  int64_t capacity_bytes() const { return capacity_bytes_; }
  int64_t size_bytes() const;
  size_t num_entries() const;
  uint64_t hits() const;
  uint64_t misses() const;
  uint64_t evictions() const;

 private:
  struct DigestHash {
    size_t operator()(const ImageDigest& d) const { return static_cast<size_t>(d.key64()); }
  };
  using List = std::list<ImageEmbedding>;  // front = most recent

  mutable std::mutex mu_;
  const int64_t capacity_bytes_;
  int64_t size_bytes_ = 0;
  uint64_t hits_ = 0, misses_ = 0, evictions_ = 0;
  List lru_;
  std::unordered_map<ImageDigest, List::iterator, DigestHash> index_;
};

}  // namespace muse::vision
