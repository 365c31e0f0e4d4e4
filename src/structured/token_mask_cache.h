// Per-position token classes for fast masks (internal to src/structured; xgrammar's adaptive
// token-mask cache idea, adapted to a byte-level Earley parser).
//
// Every path through a token starts at a "kernel" item of the current Earley set (dot > 0, or the
// start item). For a kernel position p = "X ::= a . b" the cache parses each vocabulary token in
// a sub-parse that sees p, the predictions of X (what any set holding an X item also holds) and a
// chain of parents: while every item that can wait for X (outside X's own predictions) sits at one
// position q, each real X item has a parent at q, so q is simulated too (and then q's rule's
// parent, up to 8 levels). A JSON string's characters thus see the whole string rule, not just
// one character. Each token is sorted into:
//   accepted  - consumed entirely inside that sub-parse: allowed wherever p is in the top set;
//   uncertain - a rule begun in context the sub-parse cannot see completed inside the token and
//               the next byte could continue in that context (the byte is in the follow set of
//               the rule's references that are not simulated); decided by the real parser;
//   rejected  - neither: p contributes nothing for this token.
// The mask of a set is then the union of its kernel positions' accepted sets, plus the uncertain
// tokens that the real parser accepts.
//
// Counted repeats (a string's `maxLength`, `{m,n}`) would make most tokens uncertain: whether a
// run of characters fits depends on how many are left, which no fixed sub-parse sees. So inside a
// loop (Grammar::loops) whose unit is a prefix code (no unit is a prefix of another, so a token
// splits into units one way only), the sub-parse repeats the unit without bound through the
// loop's synthetic rule and counts the units each token touches; tokens touching 2 or more units
// are "sized": allowed where the loop has that many units left on some path through the kernel
// position. Budget() reads that from the real Earley sets (O(log max) items up the doubling
// blocks). Positions between units (in the loop's own rules) all share the unit's one entry.
// Entries are computed on first use (one walk of the vocabulary trie each, ~10-150 ms at 128k
// tokens) or all at once by ComputeAll, and shared by threads.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "src/structured/earley.h"
#include "src/structured/token_vocabulary.h"

namespace muse::structured::internal {

// A set of unit counts 0..127 (bit j: exactly j units), for the counts at which a loop can end.
struct UnitCounts {
  static constexpr int kMax = 128;
  std::array<uint64_t, 2> w{};
  static UnitCounts Only(int j) {
    UnitCounts c;
    c.w[j >> 6] |= uint64_t{1} << (j & 63);
    return c;
  }
  bool Has(int j) const { return j >= 0 && j < kMax && ((w[j >> 6] >> (j & 63)) & 1); }
  bool empty() const { return (w[0] | w[1]) == 0; }
  UnitCounts& operator|=(const UnitCounts& o) {
    w[0] |= o.w[0];
    w[1] |= o.w[1];
    return *this;
  }
  bool operator==(const UnitCounts& o) const { return w == o.w; }
  // {a + b : a in this, b in o}, counts past kMax dropped.
  UnitCounts Plus(const UnitCounts& o) const;
  // this + any number of steps from `step` (a left-recursive tail).
  UnitCounts Closure(const UnitCounts& step) const;
};

class TokenMaskCache {
 public:
  struct Entry {
    // Accepted tokens: as ids when few (a literal's position), else as bitmask words; at most one
    // of the two is non-empty.
    std::vector<int32_t> accepted_ids;
    std::vector<uint32_t> accepted_bits;
    std::vector<int32_t> uncertain;  // indices into vocab.sorted_ids(), ascending
    // Sized tokens: ids in order of the units they touch, sized_units[i] for sized_ids[i] (>= 2).
    // When there are many, sized_bits[k] also holds those touching at most k + 2 units as a
    // bitmask (k up to kSizedLevels - 1; the last level holds all of them).
    std::vector<int32_t> sized_ids;
    std::vector<int32_t> sized_units;
    std::vector<std::vector<uint32_t>> sized_bits;
    // Tokens that end the loop after a number of units and go on past it (a loop's boundary
    // entry, when its context is simulated): allowed where the loop can end after exactly
    // end_units[i] more units. Sorted by units.
    std::vector<int32_t> end_ids;
    std::vector<int32_t> end_units;
    // Adds the sized tokens touching at most `budget` units to `words`.
    void AddSized(int64_t budget, std::span<uint32_t> words) const;
  };
  static constexpr int kSizedLevels = 24;
  static constexpr int64_t kUnbounded = int64_t{1} << 40;

  TokenMaskCache(const FlatGrammar* g, const TokenVocabulary* vocab);
  // Whether p is a kernel position with something to scan (dot > 0 or the start item, and not at
  // the end of its alternative).
  bool IsKernel(int32_t pos) const;
  // The entry of kernel position `pos` (computed on first use; thread-safe).
  const Entry& Get(int32_t pos) const;
  // Computes every kernel position's entry now (e.g. at compile time, off the decode path).
  void ComputeAll() const;
  // For a kernel position whose entry has sized tokens (after Get(item.pos)): the most units its
  // loop can still take on a path through `item` of the top set of `stack` (kUnbounded for no
  // limit), counting the unit in progress.
  int64_t Budget(const EarleyStack& stack, const Item& item) const;
  // For a kernel position whose entry has end tokens: the unit counts after which its loop can
  // end on some path through `item`. false when the Earley sets could not be read.
  bool EndCounts(const EarleyStack& stack, const Item& item, UnitCounts* out) const;
  // Budget / EndCounts calls until the next BeginMask share their walks up the sets of `stack`
  // (per thread; the stack must not change in between).
  static void BeginMask(const EarleyStack& stack);

 private:
  std::shared_ptr<const Entry> Compute(int32_t pos) const;
  // Sorted dot-0 positions in the closure of predicting rule x.
  std::vector<int32_t> PredictedStarts(int32_t x) const;

  const FlatGrammar* g_;
  const TokenVocabulary* vocab_;
  std::vector<ByteSet> first_rest_;     // per position: first bytes of the rest of its alternative
  std::vector<uint8_t> rest_nullable_;  // per position: the rest can derive ""
  std::vector<ByteSet> follow_;         // per rule: bytes that can follow it anywhere
  std::vector<std::vector<int32_t>> refs_;  // per rule: positions whose next symbol is the rule
  // Loops: per rule, the loop it is a part of (-1); per position in a part, the most units the
  // rest of its alternative can derive after the next symbol (kUnbounded: no limit); per rule, the
  // most units it derives (parts only).
  std::vector<int32_t> part_loop_;
  std::vector<int32_t> unit_synth_;  // per rule: the synthetic rule repeating it as a unit, or -1
  std::vector<int64_t> units_after_;
  std::vector<int64_t> max_units_;
  int64_t SymbolUnits(int32_t loop, int32_t pos) const;  // most units the next symbol derives
  // Whether synthetic rule `synth`'s unit is a non-nullable prefix code (computed once).
  bool UnitIsPrefixCode(int32_t synth) const;
  mutable std::vector<int8_t> prefix_code_;  // per synthetic rule: -1 unknown, 0, 1
  mutable std::unique_ptr<std::once_flag[]> prefix_once_;
  // Per position, how Budget() reads its loop: kNone, kBoundary (a part), kInUnit (the chain
  // of unique parents reaches the unit rule unit_rule_[pos]), or kLoopStart (the next symbol is
  // the loop's top: all of it is left).
  enum class BudgetKind : uint8_t { kNone, kBoundary, kInUnit, kLoopStart };
  mutable std::vector<BudgetKind> budget_kind_;
  mutable std::vector<int32_t> unit_rule_;
  int64_t Up(const EarleyStack& st, int32_t set, int32_t rule, int32_t loop, int depth) const;
  int64_t UpUncached(const EarleyStack& st, int32_t set, int32_t rule, int32_t loop,
                     int depth) const;
  bool EndsUp(const EarleyStack& st, int32_t set, int32_t rule, int32_t loop, int depth,
              UnitCounts* out) const;
  bool EndsUpUncached(const EarleyStack& st, int32_t set, int32_t rule, int32_t loop, int depth,
                      UnitCounts* out) const;
  // Per position in a part: the counts the rest of its alternative derives from the next symbol
  // on; per part rule: the counts it derives (least fixed point, so left recursion is exact).
  std::vector<UnitCounts> rest_counts_;
  std::vector<UnitCounts> rule_counts_;
  // Per loop: its exits are exact -- no byte that can follow the loop starts a unit, so a token
  // leaves the loop at the first such byte after a unit -- and its top has a parent to simulate.
  std::vector<uint8_t> exact_exits_;
  // Per loop: its top's alternatives begin with a unit or a part (a list begins with its first
  // item, which is no unit: before such a loop there is no boundary to stand in for).
  std::vector<uint8_t> units_only_;
  int64_t InUnit(const EarleyStack& st, const Item& it, int32_t unit, int depth) const;
  // Canonical form of position pos's sub-parse: the rules reachable from its top rule (renumbered
  // in the order met), the chain and seed positions, and the exit follow sets. Equal keys give
  // equal entries, whatever grammar they come from. "" (not shared) past 64 reachable rules.
  // `extra`: a loop's synthetic rule the sub-parse seeds (not reachable from `top`), or -1.
  std::string SubParseKey(int32_t top, const std::vector<int32_t>& chain, int32_t pos,
                          const ExitFollows& follow_out, int32_t extra) const;
  // Extends `chain` with the unique parents above rule *x (up to max_chain), moving *x to the top
  // one. true when it stopped because *x has several parents (or none).
  bool ParentChain(int32_t* x, std::vector<int32_t>* chain, size_t max_chain) const;
  bool ReachesMoreThan(int32_t x, size_t limit) const;

  mutable std::vector<std::shared_ptr<const Entry>> entries_;
  std::unique_ptr<std::once_flag[]> once_;
};

// Entries shared by every grammar compiled against one vocabulary (owned by the TokenVocabulary):
// the front ends emit the same rules for a JSON string, a number, ... in every schema, so each
// such sub-parse walks the vocabulary once per process rather than once per schema.
struct SharedTokenClasses {
  static constexpr size_t kMaxBytes = size_t{256} << 20;  // then entries stay per grammar
  std::mutex mu;
  absl::flat_hash_map<std::string, std::shared_ptr<const TokenMaskCache::Entry>> entries;
  size_t bytes = 0;
  int64_t hits = 0;
  int64_t misses = 0;
};

}  // namespace muse::structured::internal
