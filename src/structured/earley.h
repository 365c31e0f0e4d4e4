// The Earley recognizer under GrammarMatcher (internal to src/structured).
//
// FlatGrammar numbers every dotted alternative "rule ::= a . b" of a Grammar as a position, so an
// Earley item is two integers (position, origin set). A synthetic start rule "start ::= root" is
// added, so the grammar has ended exactly when the top set holds the completed start item.
// EarleyStack keeps one Earley set per consumed byte, contiguous in one vector: pushing a byte
// builds the next set (scan, then predict / complete to a fixed point), popping truncates. Nullable
// rules are completed during prediction (Aycock & Horspool), which keeps epsilon rules and left
// recursion correct without re-scanning the current set.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "src/structured/grammar.h"

namespace muse::structured::internal {

struct Item {
  int32_t pos = 0;
  int32_t origin = 0;
  bool operator==(const Item& o) const { return pos == o.pos && origin == o.origin; }
};

struct FlatGrammar {
  enum class Next : uint8_t { kEnd, kBytes, kRule };
  // Per position: the rule it belongs to, its dot, and the symbol after the dot.
  std::vector<int32_t> rule;
  std::vector<int32_t> dot;
  std::vector<Next> next;
  std::vector<int32_t> next_index;  // byte-set index (kBytes) or rule index (kRule)
  // Per rule (the start rule included): the positions of its alternatives' first symbols.
  std::vector<std::vector<int32_t>> alt_starts;
  std::vector<uint8_t> nullable;
  std::vector<ByteSet> byte_sets;
  int32_t start_rule = 0;  // == number of Grammar rules
  int32_t start_pos = 0;   // "start ::= . root"
  // The grammar's loops (Grammar::loops), and after the start rule one synthetic rule per distinct
  // loop unit u: "loop_u ::= loop_u u | ε". Nothing refers to them, so parses never meet them;
  // token classes (token_mask_cache.h) seed sub-parses with them to repeat a unit without bound.
  std::vector<Loop> loops;
  std::vector<int32_t> loop_synth;  // per loop: its unit's synthetic rule
  // Per loop also "S_l ::= S_l unit | ε" standing for the loop's top: completing S_l advances
  // the items that wait for the top (alias[S_l] = top; -1 for every other rule).
  std::vector<int32_t> loop_alias_synth;
  std::vector<int32_t> alias;
  // "S ::= S u ." of a synthetic rule: a boundary just after a unit.
  int32_t SynthAfterUnit(int32_t synth) const { return alt_starts[synth][0] + 2; }
  int32_t num_real_positions = 0;  // positions of the grammar and the start rule come first
  bool is_synthetic(int32_t r) const { return r > start_rule; }
  // "loop_u ::= loop_u . u" of a synthetic rule: a boundary between two units.
  int32_t SynthBoundary(int32_t synth) const { return alt_starts[synth][0] + 1; }

  explicit FlatGrammar(const Grammar& g);
  int32_t num_positions() const { return static_cast<int32_t>(rule.size()); }
  int32_t num_rules() const { return static_cast<int32_t>(alt_starts.size()); }
};

// The bytes that may follow each rule in context a sub-parse does not see, per context level: a
// rule without an override at a level uses `base` (its follow set anywhere in the grammar).
struct ExitFollows {
  const std::vector<ByteSet>* base = nullptr;
  std::vector<std::vector<std::pair<int32_t, ByteSet>>> overrides;  // per level, sorted by rule
  const ByteSet& Get(int32_t level, int32_t rule) const;
};

class EarleyStack {
 public:
  explicit EarleyStack(const FlatGrammar* g);

  // Clears the stack and builds set 0 as the closure of `kernel` (origins must be 0).
  void Reset(std::span<const Item> kernel);
  // Builds a new top set as the closure of `kernel` (no byte consumed; used to seed sub-parses).
  void PushKernel(std::span<const Item> kernel);
  // Consumes byte b. false (and nothing pushed) when no item can scan it.
  bool Push(uint8_t b);
  void Truncate(int num_sets);
  int num_sets() const { return static_cast<int>(set_begin_.size()) - 1; }
  std::span<const Item> set(int k) const {
    return {items_.data() + set_begin_[k], items_.data() + set_begin_[k + 1]};
  }
  std::span<const Item> top() const { return set(num_sets() - 1); }
  // Whether some item of the top set scans a byte.
  bool TopCanScan() const;
  // Whether the top set holds "rule ::= ... ." with origin `origin`.
  bool TopHasCompleted(int32_t rule, int32_t origin) const;

  // Sub-parse mode: sets 0..num_context-1 stand for context sets. Completing a rule Y whose origin
  // r is one of them, in a set after the first byte, is an "exit" to context the sub-parse may not
  // see: follow->Get(r, Y) (the bytes that could continue there) is recorded into
  // exit_follow(set).
  void SetExitTracking(int32_t num_context, const ExitFollows* follow);
  const ByteSet& exit_follow(int k) const { return exit_follow_[k]; }

 private:
  void Close(int k);  // items from set_begin_[k] to the end form set k: close them
  void Add(int k, Item it);

  const FlatGrammar* g_;
  std::vector<Item> items_;
  std::vector<int32_t> set_begin_;  // set k is items_[set_begin_[k], set_begin_[k + 1])
  // Scratch for building one set: which rules were predicted, a hash set of items.
  std::vector<uint32_t> predicted_;
  uint32_t stamp_ = 0;
  std::vector<uint64_t> table_;
  std::vector<uint32_t> table_stamp_;
  int32_t num_context_ = 0;
  const ExitFollows* follow_ = nullptr;
  std::vector<ByteSet> exit_follow_;
};

}  // namespace muse::structured::internal
