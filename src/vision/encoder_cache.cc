#include "src/vision/encoder_cache.h"

namespace muse::vision {

std::optional<ImageEmbedding> EncoderCache::Lookup(const ImageDigest& digest) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(digest);
  if (it == index_.end()) {
    ++misses_;
    return std::nullopt;
  }
  ++hits_;
  lru_.splice(lru_.begin(), lru_, it->second);
  return *it->second;
}

bool EncoderCache::Insert(const ImageEmbedding& e) {
  const int64_t bytes = e.bytes();
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = index_.find(e.digest); it != index_.end()) {
    size_bytes_ -= it->second->bytes();
    lru_.erase(it->second);
    index_.erase(it);
  }
  if (bytes > capacity_bytes_) return false;
  while (size_bytes_ + bytes > capacity_bytes_ && !lru_.empty()) {
    size_bytes_ -= lru_.back().bytes();
    index_.erase(lru_.back().digest);
    lru_.pop_back();
    ++evictions_;
  }
  lru_.push_front(e);
  index_[e.digest] = lru_.begin();
  size_bytes_ += bytes;
  return true;
}

int64_t EncoderCache::size_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return size_bytes_;
}
size_t EncoderCache::num_entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.size();
}
uint64_t EncoderCache::hits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return hits_;
}
uint64_t EncoderCache::misses() const {
  std::lock_guard<std::mutex> lock(mu_);
  return misses_;
}
uint64_t EncoderCache::evictions() const {
  std::lock_guard<std::mutex> lock(mu_);
  return evictions_;
}

}  // namespace muse::vision
