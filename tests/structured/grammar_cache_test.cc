// GrammarCache: hits and misses, canonical JSON keys (whitespace does not split entries, key
// order does), options in the key, cached InvalidArgument errors, LRU eviction, the compile
// observer, and concurrent requests for one new constraint compiling it once.
#include "src/structured/grammar_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"

namespace muse::structured {
namespace {

std::shared_ptr<const TokenVocabulary> Vocab() {
  std::vector<std::string> tokens = {"<eos>", "a", "b", "ab", "{", "}", "\"", ":", ",", "1", "x"};
  for (char c = ' '; c < 127; ++c) tokens.push_back(std::string(1, c));
  return TokenVocabulary::FromBytes(std::move(tokens), {0}, {0});
}

Constraint Regex(std::string text) {
  Constraint c;
  c.kind = ConstraintKind::kRegex;
  c.text = std::move(text);
  return c;
}

Constraint Schema(std::string text) {
  Constraint c;
  c.kind = ConstraintKind::kJsonSchema;
  c.text = std::move(text);
  return c;
}

TEST(GrammarCacheTest, HitReturnsTheSameGrammar) {
  GrammarCache cache(Vocab(), 8);
  auto a = cache.Get(Regex("ab+"));
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = cache.Get(Regex("ab+"));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->get(), b->get());
  auto other = cache.Get(Regex("ab*"));
  ASSERT_TRUE(other.ok());
  EXPECT_NE(a->get(), other->get());
  const GrammarCacheStats s = cache.stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 2u);
  EXPECT_EQ(s.entries, 2);
  EXPECT_EQ(s.compile_errors, 0u);
  EXPECT_GT(s.compile_seconds, 0);
}

TEST(GrammarCacheTest, JsonKeysAreCanonicalButKeepKeyOrder) {
  const std::string compact = R"({"type":"object","properties":{"b":{"type":"integer"},)"
                              R"("a":{"type":"boolean"}},"required":["b","a"]})";
  const std::string spaced =
      "{ \"type\" : \"object\",\n \"properties\": {\"b\": {\"type\": "
      "\"integer\"}, \"a\": {\"type\": \"boolean\"}},\n"
      "  \"required\": [\"b\", \"a\"] }";
  const std::string reordered = R"({"type":"object","properties":{"a":{"type":"boolean"},)"
                                R"("b":{"type":"integer"}},"required":["b","a"]})";
  EXPECT_EQ(GrammarCache::Key(Schema(compact)), GrammarCache::Key(Schema(spaced)));
  EXPECT_NE(GrammarCache::Key(Schema(compact)), GrammarCache::Key(Schema(reordered)));
  Constraint loose = Schema(compact);
  loose.json.strict = false;
  EXPECT_NE(GrammarCache::Key(Schema(compact)), GrammarCache::Key(loose));
  Constraint flexible = Schema(compact);
  flexible.json.compact = false;
  EXPECT_NE(GrammarCache::Key(Schema(compact)), GrammarCache::Key(flexible));
  // Options that do not apply to a kind do not split its entries.
  Constraint r1 = Regex("a"), r2 = Regex("a");
  r2.json.strict = false;
  EXPECT_EQ(GrammarCache::Key(r1), GrammarCache::Key(r2));
  // Choices are keyed unambiguously: ["a,b"] is not ["a", "b"].
  Constraint c1, c2;
  c1.kind = c2.kind = ConstraintKind::kChoice;
  c1.choices = {"a,b"};
  c2.choices = {"a", "b"};
  EXPECT_NE(GrammarCache::Key(c1), GrammarCache::Key(c2));

  GrammarCache cache(Vocab(), 8);
  auto a = cache.Get(Schema(compact));
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = cache.Get(Schema(spaced));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->get(), b->get());
}

TEST(GrammarCacheTest, InvalidArgumentIsCachedWithItsMessage) {
  int compiles = 0, failed = 0;
  GrammarCache cache(Vocab(), 8, [&](ConstraintKind kind, double seconds, bool ok) {
    EXPECT_EQ(kind, ConstraintKind::kRegex);
    EXPECT_GE(seconds, 0);
    ++compiles;
    failed += !ok;
  });
  auto first = cache.Get(Regex("a(b"));
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.status().code(), absl::StatusCode::kInvalidArgument);
  auto second = cache.Get(Regex("a(b"));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status(), first.status());
  EXPECT_EQ(compiles, 1);
  EXPECT_EQ(failed, 1);
  const GrammarCacheStats s = cache.stats();
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.compile_errors, 1u);
}

TEST(GrammarCacheTest, FindAnswersOnlyFinishedCompilesAndNeverCompiles) {
  int compiles = 0;
  GrammarCache cache(Vocab(), 8, [&](ConstraintKind, double, bool) { ++compiles; });
  EXPECT_FALSE(cache.Find(Regex("ab+")).has_value());  // a miss: nothing started, nothing counted
  EXPECT_EQ(compiles, 0);
  EXPECT_EQ(cache.stats().misses, 0u);
  EXPECT_EQ(cache.stats().entries, 0);
  auto got = cache.Get(Regex("ab+"));
  ASSERT_TRUE(got.ok());
  auto found = cache.Find(Regex("ab+"));
  ASSERT_TRUE(found.has_value());
  ASSERT_TRUE(found->ok());
  EXPECT_EQ(found->value().get(), got->get());
  // A cached InvalidArgument is found with its message.
  auto bad = cache.Get(Regex("a(b"));
  ASSERT_FALSE(bad.ok());
  auto found_bad = cache.Find(Regex("a(b"));
  ASSERT_TRUE(found_bad.has_value());
  EXPECT_EQ(found_bad->status(), bad.status());
  EXPECT_EQ(compiles, 2);
  EXPECT_EQ(cache.stats().hits, 2u);
  EXPECT_EQ(cache.stats().misses, 2u);
}

TEST(GrammarCacheTest, StatsCountTheVocabularysSharedTokenClasses) {
  GrammarCache cache(Vocab(), 8);
  EXPECT_EQ(cache.stats().shared_token_classes, 0);
  ASSERT_TRUE(
      cache.Get(Schema(R"({"type": "object", "properties": {"s": {"type": "string"}}})")).ok());
  const int64_t after_first = cache.stats().shared_token_classes;
  EXPECT_GT(after_first, 0);
  // Another schema with a string reuses the string's classes rather than adding them again.
  ASSERT_TRUE(cache.Get(Schema(R"({"type": "array", "items": {"type": "string"}})")).ok());
  EXPECT_GE(cache.stats().shared_token_classes, after_first);
}

TEST(GrammarCacheTest, LeastRecentlyUsedIsEvicted) {
  GrammarCache cache(Vocab(), 2);
  ASSERT_TRUE(cache.Get(Regex("a")).ok());
  ASSERT_TRUE(cache.Get(Regex("b")).ok());
  ASSERT_TRUE(cache.Get(Regex("a")).ok());   // "a" is now the most recent
  ASSERT_TRUE(cache.Get(Regex("ab")).ok());  // evicts "b"
  EXPECT_EQ(cache.stats().evictions, 1u);
  EXPECT_EQ(cache.stats().entries, 2);
  ASSERT_TRUE(cache.Get(Regex("a")).ok());  // still there
  EXPECT_EQ(cache.stats().misses, 3u);
  ASSERT_TRUE(cache.Get(Regex("b")).ok());  // compiled again
  EXPECT_EQ(cache.stats().misses, 4u);
}

TEST(GrammarCacheTest, ConcurrentRequestsCompileOnce) {
  std::atomic<int> compiles{0};
  GrammarCache cache(Vocab(), 8, [&](ConstraintKind, double, bool) { ++compiles; });
  // Long enough to compile that the threads overlap; the counts hold either way.
  std::string big = "(";
  for (int i = 0; i < 200; ++i) absl::StrAppend(&big, i ? "|" : "", "x{", i, "}a");
  big += ")b";
  constexpr int kThreads = 8;
  std::vector<const CompiledGrammar*> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto g = cache.Get(Regex(big));
      got[t] = g.ok() ? g->get() : nullptr;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(compiles.load(), 1);
  ASSERT_NE(got[0], nullptr);
  for (int t = 1; t < kThreads; ++t) EXPECT_EQ(got[t], got[0]);
  EXPECT_EQ(cache.stats().misses, 1u);
  EXPECT_EQ(cache.stats().hits, static_cast<uint64_t>(kThreads - 1));
}

TEST(GrammarCacheTest, EveryKindCompiles) {
  GrammarCache cache(Vocab(), 8);
  Constraint obj;
  obj.kind = ConstraintKind::kJsonObject;
  Constraint ebnf;
  ebnf.kind = ConstraintKind::kEbnf;
  ebnf.text = "root ::= \"a\" [b-x]*";
  Constraint choice;
  choice.kind = ConstraintKind::kChoice;
  choice.choices = {"ab", "ba"};
  for (const Constraint& c : {obj, ebnf, choice, Regex("a|b"), Schema(R"({"type":"integer"})")}) {
    auto g = cache.Get(c);
    EXPECT_TRUE(g.ok()) << ConstraintKindName(c.kind) << ": " << g.status();
  }
  EXPECT_EQ(cache.stats().entries, 5);
}

}  // namespace
}  // namespace muse::structured
