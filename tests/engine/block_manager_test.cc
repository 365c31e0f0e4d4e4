#include "src/engine/block_manager.h"

#include <gtest/gtest.h>

#include <numeric>

namespace muse::engine {
namespace {

std::vector<int32_t> Tokens(int n, int start = 100) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), start);
  return t;
}

// Caches every full block of `table` as holding `tokens`.
void CacheAll(BlockManager& bm, const std::vector<int32_t>& tokens,
              const std::vector<int32_t>& table) {
  std::vector<uint64_t> hashes;
  ExtendBlockHashes(tokens, {}, &hashes);
  for (size_t b = 0; b < hashes.size() && b < table.size(); ++b) {
    bm.Cache(table[b], MakeBlockKey(tokens, static_cast<int>(b), b ? hashes[b - 1] : 0, {}),
             hashes[b]);
  }
}

int CountHits(const BlockManager& bm, const std::vector<int32_t>& tokens) {
  std::vector<uint64_t> hashes;
  ExtendBlockHashes(tokens, {}, &hashes);
  int hits = 0;
  for (size_t b = 0; b < hashes.size(); ++b) {
    if (!bm.Lookup(MakeBlockKey(tokens, static_cast<int>(b), b ? hashes[b - 1] : 0, {}), hashes[b]))
      break;
    ++hits;
  }
  return hits;
}

TEST(BlockManagerTest, AllocateReleaseRefcounts) {
  BlockManager bm(4);
  EXPECT_EQ(bm.num_free_blocks(), 4);
  std::vector<int32_t> t1, t2;
  ASSERT_TRUE(bm.GrowTable(&t1, 17));  // 2 blocks
  EXPECT_EQ(t1.size(), 2u);
  EXPECT_EQ(bm.num_used_blocks(), 2);
  ASSERT_TRUE(bm.GrowTable(&t1, 32));  // still 2 blocks
  EXPECT_EQ(t1.size(), 2u);
  // Sharing: t2 holds t1's first block too.
  bm.Acquire(t1[0]);
  t2.push_back(t1[0]);
  EXPECT_EQ(bm.ref_count(t1[0]), 2);
  EXPECT_TRUE(bm.CheckInvariants({&t1, &t2}).ok());
  // All-or-nothing growth.
  EXPECT_FALSE(bm.GrowTable(&t2, 16 * 4));
  EXPECT_EQ(t2.size(), 1u);
  EXPECT_EQ(bm.num_free_blocks(), 2);
  bm.FreeTable(&t1);
  EXPECT_EQ(bm.ref_count(t2[0]), 1);
  EXPECT_EQ(bm.num_used_blocks(), 1);
  bm.FreeTable(&t2);
  EXPECT_EQ(bm.num_used_blocks(), 0);
  EXPECT_TRUE(bm.CheckInvariants({}).ok());
}

TEST(BlockManagerTest, InvariantCheckCatchesLeak) {
  BlockManager bm(3);
  std::vector<int32_t> t;
  ASSERT_TRUE(bm.GrowTable(&t, 20));
  std::vector<int32_t> forgotten;  // a table dropped without FreeTable
  EXPECT_FALSE(bm.CheckInvariants({&forgotten}).ok());
  EXPECT_TRUE(bm.CheckInvariants({&t}).ok());
}

TEST(BlockManagerTest, PrefixHitAfterRelease) {
  BlockManager bm(8);
  const auto tokens = Tokens(40);  // 2 full blocks + 8
  std::vector<int32_t> t;
  ASSERT_TRUE(bm.GrowTable(&t, 40));
  CacheAll(bm, tokens, t);
  EXPECT_EQ(bm.num_cached_blocks(), 2);
  EXPECT_EQ(CountHits(bm, tokens), 2);
  const int first = t[0];
  bm.FreeTable(&t);
  // Cached blocks stay findable while unreferenced; they count as free.
  EXPECT_EQ(bm.num_free_blocks(), 8);
  EXPECT_EQ(CountHits(bm, tokens), 2);
  EXPECT_TRUE(bm.CheckInvariants({}).ok());
  // Reuse: Acquire revives the cached block.
  std::vector<int32_t> t2;
  bm.Acquire(first);
  t2.push_back(first);
  EXPECT_EQ(bm.num_free_blocks(), 7);
  EXPECT_TRUE(bm.CheckInvariants({&t2}).ok());
  // A different prefix misses, and a changed first block breaks the whole chain.
  auto other = tokens;
  other[3] = 7;
  EXPECT_EQ(CountHits(bm, other), 0);
  bm.FreeTable(&t2);
}

TEST(BlockManagerTest, ExtraKeySeparatesContent) {
  const auto tokens = Tokens(32);
  std::vector<ContentSpan> img_a{{.offset = 4, .num_tokens = 8, .digest = 111}};
  std::vector<ContentSpan> img_b{{.offset = 4, .num_tokens = 8, .digest = 222}};
  std::vector<uint64_t> ha, hb, hn;
  ExtendBlockHashes(tokens, img_a, &ha);
  ExtendBlockHashes(tokens, img_b, &hb);
  ExtendBlockHashes(tokens, {}, &hn);
  EXPECT_NE(ha[0], hb[0]);
  EXPECT_NE(ha[0], hn[0]);
  EXPECT_NE(ha[1], hb[1]);  // chained: the second block differs through its parent
}

TEST(BlockManagerTest, EvictsLruOnlyWhenFreeRunsOut) {
  BlockManager bm(4);
  const auto a = Tokens(16, 0), b = Tokens(16, 1000);
  std::vector<int32_t> ta, tb;
  ASSERT_TRUE(bm.GrowTable(&ta, 16));
  CacheAll(bm, a, ta);
  ASSERT_TRUE(bm.GrowTable(&tb, 16));
  CacheAll(bm, b, tb);
  bm.FreeTable(&ta);  // a released first -> least recently used
  bm.FreeTable(&tb);
  EXPECT_EQ(bm.num_cached_blocks(), 2);
  // Two never-cached blocks are handed out before any eviction.
  std::vector<int32_t> t;
  ASSERT_TRUE(bm.GrowTable(&t, 32));
  EXPECT_EQ(bm.num_cached_blocks(), 2);
  EXPECT_EQ(CountHits(bm, a), 1);
  EXPECT_EQ(CountHits(bm, b), 1);
  // The next one evicts a (LRU), keeping b.
  ASSERT_TRUE(bm.GrowTable(&t, 48));
  EXPECT_EQ(CountHits(bm, a), 0);
  EXPECT_EQ(CountHits(bm, b), 1);
  EXPECT_TRUE(bm.CheckInvariants({&t}).ok());
  ASSERT_TRUE(bm.GrowTable(&t, 64));
  EXPECT_EQ(bm.num_cached_blocks(), 0);
  EXPECT_FALSE(bm.GrowTable(&t, 65));
  bm.FreeTable(&t);
  EXPECT_TRUE(bm.CheckInvariants({}).ok());
}

TEST(BlockManagerTest, ReuseRefreshesLru) {
  BlockManager bm(2);
  const auto a = Tokens(16, 0), b = Tokens(16, 1000);
  std::vector<int32_t> ta, tb;
  ASSERT_TRUE(bm.GrowTable(&ta, 16));
  CacheAll(bm, a, ta);
  ASSERT_TRUE(bm.GrowTable(&tb, 16));
  CacheAll(bm, b, tb);
  const int block_a = ta[0];
  bm.FreeTable(&ta);
  bm.FreeTable(&tb);
  // Touch a: acquire + release makes it most recently used, so b is evicted first.
  bm.Acquire(block_a);
  bm.Release(block_a);
  std::vector<int32_t> t;
  ASSERT_TRUE(bm.GrowTable(&t, 16));
  EXPECT_EQ(CountHits(bm, a), 1);
  EXPECT_EQ(CountHits(bm, b), 0);
  bm.FreeTable(&t);
}

TEST(BlockManagerTest, DuplicateKeyStaysPrivate) {
  BlockManager bm(4);
  const auto a = Tokens(16);
  std::vector<int32_t> t1, t2;
  ASSERT_TRUE(bm.GrowTable(&t1, 16));
  ASSERT_TRUE(bm.GrowTable(&t2, 16));
  CacheAll(bm, a, t1);
  CacheAll(bm, a, t2);  // same content computed twice in one step
  EXPECT_TRUE(bm.is_cached(t1[0]));
  EXPECT_FALSE(bm.is_cached(t2[0]));
  bm.FreeTable(&t2);
  bm.FreeTable(&t1);
  EXPECT_EQ(bm.num_cached_blocks(), 1);
  EXPECT_TRUE(bm.CheckInvariants({}).ok());
}

TEST(BlockManagerTest, CachingDisabled) {
  BlockManager bm(2, /*enable_prefix_caching=*/false);
  const auto a = Tokens(16);
  std::vector<int32_t> t;
  ASSERT_TRUE(bm.GrowTable(&t, 16));
  CacheAll(bm, a, t);
  EXPECT_EQ(bm.num_cached_blocks(), 0);
  EXPECT_EQ(CountHits(bm, a), 0);
  bm.FreeTable(&t);
}

// Copy-on-write shape used for n > 1: samples share the full prompt blocks, each owns its tail.
TEST(BlockManagerTest, SharedPromptBlocksFreedOnceAllSamplesFinish) {
  BlockManager bm(10);
  std::vector<int32_t> leader;
  ASSERT_TRUE(bm.GrowTable(&leader, 40));  // 2 full + partial
  std::vector<std::vector<int32_t>> samples(3);
  for (auto& s : samples) {
    for (int b = 0; b < 2; ++b) {
      bm.Acquire(leader[b]);
      s.push_back(leader[b]);
    }
    ASSERT_TRUE(bm.GrowTable(&s, 41));  // own copy of the partial block
    EXPECT_NE(s[2], leader[2]);
  }
  EXPECT_EQ(bm.ref_count(leader[0]), 4);
  EXPECT_EQ(bm.num_used_blocks(), 3 + 3);
  std::vector<const std::vector<int32_t>*> all{&leader, &samples[0], &samples[1], &samples[2]};
  EXPECT_TRUE(bm.CheckInvariants(all).ok());
  bm.FreeTable(&leader);
  for (auto& s : samples) bm.FreeTable(&s);
  EXPECT_EQ(bm.num_used_blocks(), 0);
  EXPECT_TRUE(bm.CheckInvariants({}).ok());
}

}  // namespace
}  // namespace muse::engine
