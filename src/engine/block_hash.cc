#include "src/engine/block_hash.h"

namespace muse::engine {
namespace {

inline uint64_t Mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

inline uint64_t Combine(uint64_t h, uint64_t v) { return Mix(h ^ (v + 0x632BE59BD9B4E019ull)); }

}  // namespace

uint64_t BlockKey::Hash() const {
  uint64_t h = Combine(Mix(parent_hash), extra);
  for (int i = 0; i < kernels::kKvBlockSize; i += 2) {
    uint64_t pair = (static_cast<uint64_t>(static_cast<uint32_t>(tokens[i])) << 32) |
                    static_cast<uint32_t>(tokens[i + 1]);
    h = Combine(h, pair);
  }
  return h == 0 ? 1 : h;  // 0 means "no parent"
}

BlockKey MakeBlockKey(const std::vector<int32_t>& tokens, int block_index, uint64_t parent_hash,
                      const std::vector<ContentSpan>& content) {
  BlockKey key;
  key.parent_hash = parent_hash;
  const int64_t begin = static_cast<int64_t>(block_index) * kernels::kKvBlockSize;
  const int64_t end = begin + kernels::kKvBlockSize;
  for (int i = 0; i < kernels::kKvBlockSize; ++i) key.tokens[i] = tokens[begin + i];
  for (const ContentSpan& span : content) {
    const int64_t s = span.offset, e = span.offset + span.num_tokens;
    if (e <= begin || s >= end) continue;
    // The span's position relative to the block matters as well as its digest.
    key.extra = Combine(Combine(key.extra, span.digest), static_cast<uint64_t>(s - begin + 1024));
  }
  return key;
}

void ExtendBlockHashes(const std::vector<int32_t>& tokens, const std::vector<ContentSpan>& content,
                       std::vector<uint64_t>* hashes) {
  const int full = static_cast<int>(tokens.size() / kernels::kKvBlockSize);
  for (int b = static_cast<int>(hashes->size()); b < full; ++b) {
    uint64_t parent = b == 0 ? 0 : (*hashes)[b - 1];
    hashes->push_back(MakeBlockKey(tokens, b, parent, content).Hash());
  }
}

}  // namespace muse::engine
