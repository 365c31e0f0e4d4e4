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
// tokens that the real parser accepts. Entries are computed on first use (one walk of the
// vocabulary trie each, ~10-150 ms at 128k tokens) or all at once by ComputeAll, and shared by
// threads.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "src/structured/earley.h"
#include "src/structured/token_vocabulary.h"

namespace muse::structured::internal {

class TokenMaskCache {
 public:
  struct Entry {
    // Accepted tokens: as ids when few (a literal's position), else as bitmask words; at most one
    // of the two is non-empty.
    std::vector<int32_t> accepted_ids;
    std::vector<uint32_t> accepted_bits;
    std::vector<int32_t> uncertain;  // indices into vocab.sorted_ids(), ascending
  };

  TokenMaskCache(const FlatGrammar* g, const TokenVocabulary* vocab);
  // Whether p is a kernel position with something to scan (dot > 0 or the start item, and not at
  // the end of its alternative).
  bool IsKernel(int32_t pos) const;
  // The entry of kernel position `pos` (computed on first use; thread-safe).
  const Entry& Get(int32_t pos) const;
  // Computes every kernel position's entry now (e.g. at compile time, off the decode path).
  void ComputeAll() const;

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
  // Canonical form of position pos's sub-parse: the rules reachable from its top rule (renumbered
  // in the order met), the chain and seed positions, and the exit follow sets. Equal keys give
  // equal entries, whatever grammar they come from. "" (not shared) past 64 reachable rules.
  std::string SubParseKey(int32_t top, const std::vector<int32_t>& chain, int32_t pos,
                          const ExitFollows& follow_out) const;

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
