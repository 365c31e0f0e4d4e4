#include "src/structured/token_mask_cache.h"

#include <algorithm>
#include <bit>

#include "absl/container/flat_hash_set.h"

namespace muse::structured::internal {

namespace {
constexpr size_t kMaxSharedRules = 64;
// A loop's entry simulates one parent above its top (a JSON string's closing quote): enough to
// decide most tokens that end the loop, and it keeps the entry shared by every loop of the same
// unit in the same kind of string, whatever its bound and wherever it sits.
constexpr size_t kLoopContext = 1;
}  // namespace

TokenMaskCache::TokenMaskCache(const FlatGrammar* g, const TokenVocabulary* vocab)
    : g_(g), vocab_(vocab) {
  const int32_t np = g->num_positions(), nr = g->num_rules();
  std::vector<ByteSet> first(nr);
  first_rest_.assign(np, ByteSet());
  rest_nullable_.assign(np, 0);
  refs_.assign(nr, {});
  // Synthetic loop rules stand for context, not grammar: their references are left out.
  for (int32_t p = 0; p < g->num_real_positions; ++p) {
    if (g->next[p] == FlatGrammar::Next::kRule) refs_[g->next_index[p]].push_back(p);
  }
  // FIRST of every alternative suffix, to a fixed point over the rules' FIRST sets. Positions of
  // one alternative are consecutive and end with its kEnd position, so walk them backwards.
  for (bool changed = true; changed;) {
    changed = false;
    for (int32_t p = np - 1; p >= 0; --p) {
      ByteSet f;
      bool nul = false;
      switch (g->next[p]) {
        case FlatGrammar::Next::kEnd:
          nul = true;
          break;
        case FlatGrammar::Next::kBytes:
          f = g->byte_sets[g->next_index[p]];
          break;
        case FlatGrammar::Next::kRule: {
          const int32_t y = g->next_index[p];
          f = first[y];
          if (g->nullable[y]) {
            f |= first_rest_[p + 1];
            nul = rest_nullable_[p + 1] != 0;
          }
          break;
        }
      }
      first_rest_[p] = f;
      rest_nullable_[p] = nul;
      if (g->dot[p] == 0) {
        ByteSet merged = first[g->rule[p]];
        merged |= f;
        if (!(merged == first[g->rule[p]])) {
          first[g->rule[p]] = merged;
          changed = true;
        }
      }
    }
  }
  follow_.assign(nr, ByteSet());
  for (bool changed = true; changed;) {
    changed = false;
    for (int32_t y = 0; y < nr; ++y) {
      ByteSet f = follow_[y];
      for (int32_t q : refs_[y]) {
        f |= first_rest_[q + 1];
        if (rest_nullable_[q + 1]) f |= follow_[g->rule[q]];
      }
      if (!(f == follow_[y])) {
        follow_[y] = f;
        changed = true;
      }
    }
  }
  // A unit repeated by its synthetic rule is followed, outside the loops, by what follows them.
  for (size_t l = 0; l < g->loops.size(); ++l) {
    follow_[g->loop_synth[l]] = ByteSet();
  }
  for (size_t l = 0; l < g->loops.size(); ++l) {
    follow_[g->loop_synth[l]] |= follow_[g->loops[l].top];
    follow_[g->loop_alias_synth[l]] = follow_[g->loops[l].top];
  }
  // Loop structure: each part's loop, the units each part derives at most (a cycle through the
  // parts -- the left-recursive tail -- is unbounded), the units after each part position.
  part_loop_.assign(nr, -1);
  unit_synth_.assign(nr, -1);
  for (size_t l = 0; l < g->loops.size(); ++l) {
    for (int32_t x : g->loops[l].parts) part_loop_[x] = static_cast<int32_t>(l);
    if (g->loops[l].unit.is_rule()) unit_synth_[g->loops[l].unit.index] = g->loop_synth[l];
  }
  max_units_.assign(nr, 0);
  std::vector<uint8_t> state(nr, 0);  // 0 new, 1 in progress, 2 done
  auto units_of = [&](auto&& self, int32_t x) -> int64_t {
    if (state[x] == 1) return kUnbounded;
    if (state[x] == 2) return max_units_[x];
    state[x] = 1;
    int64_t best = 0;
    for (int32_t p : g->alt_starts[x]) {
      int64_t sum = 0;
      for (; g->next[p] != FlatGrammar::Next::kEnd; ++p) {
        const int32_t l = part_loop_[x];
        int64_t u = SymbolUnits(l, p);
        if (g->next[p] == FlatGrammar::Next::kRule && part_loop_[g->next_index[p]] == l &&
            !(g->loops[l].unit == Symbol::Rule(g->next_index[p]))) {
          u = self(self, g->next_index[p]);
        }
        sum = std::min(kUnbounded, sum + u);
      }
      best = std::max(best, sum);
    }
    state[x] = 2;
    return max_units_[x] = best;
  };
  for (int32_t x = 0; x < nr; ++x) {
    if (part_loop_[x] >= 0) units_of(units_of, x);
  }
  units_after_.assign(np, 0);
  for (int32_t p = np - 1; p >= 0; --p) {
    const int32_t l = part_loop_[g->rule[p]];
    if (l < 0 || g->next[p] == FlatGrammar::Next::kEnd ||
        g->next[p + 1] == FlatGrammar::Next::kEnd) {
      continue;
    }
    units_after_[p] = std::min(kUnbounded, SymbolUnits(l, p + 1) + units_after_[p + 1]);
  }
  // Unit counts of the parts, to a least fixed point (a left-recursive tail adds one count per
  // round; counts stop at UnitCounts::kMax).
  rest_counts_.assign(np, UnitCounts());
  rule_counts_.assign(nr, UnitCounts());
  for (bool changed = true; changed;) {
    changed = false;
    for (int32_t p = np - 1; p >= 0; --p) {
      const int32_t l = part_loop_[g->rule[p]];
      if (l < 0) continue;
      UnitCounts c = UnitCounts::Only(0);
      if (g->next[p] != FlatGrammar::Next::kEnd) {
        const Symbol& unit = g->loops[l].unit;
        const int32_t y = g->next_index[p];
        const bool is_rule = g->next[p] == FlatGrammar::Next::kRule;
        UnitCounts sym = UnitCounts::Only(0);
        if (unit.is_rule() == is_rule && unit.index == y) {
          sym = UnitCounts::Only(1);
        } else if (is_rule && part_loop_[y] == l) {
          sym = rule_counts_[y];
        }
        c = sym.Plus(rest_counts_[p + 1]);
      }
      if (!(c == rest_counts_[p])) {
        rest_counts_[p] = c;
        changed = true;
      }
      if (g->dot[p] == 0) {
        UnitCounts merged = rule_counts_[g->rule[p]];
        merged |= c;
        if (!(merged == rule_counts_[g->rule[p]])) {
          rule_counts_[g->rule[p]] = merged;
          changed = true;
        }
      }
    }
  }
  // Loops whose top derives units from its first symbol on (not a list's first item).
  units_only_.assign(g->loops.size(), 1);
  for (size_t l = 0; l < g->loops.size(); ++l) {
    for (int32_t p : g->alt_starts[g->loops[l].top]) {
      if (g->next[p] == FlatGrammar::Next::kEnd) continue;
      const Symbol& unit = g->loops[l].unit;
      const bool is_rule = g->next[p] == FlatGrammar::Next::kRule;
      const int32_t y = g->next_index[p];
      const bool ok = (unit.is_rule() == is_rule && unit.index == y) ||
                      (is_rule && part_loop_[y] == static_cast<int32_t>(l));
      if (!ok) units_only_[l] = 0;
    }
  }
  exact_exits_.assign(g->loops.size(), 0);
  for (size_t l = 0; l < g->loops.size(); ++l) {
    ByteSet both = first_rest_[g->SynthBoundary(g->loop_synth[l])];
    const ByteSet& after = follow_[g->loops[l].top];
    bool disjoint = true;
    for (int w = 0; w < 4; ++w) disjoint &= (both.bits()[w] & after.bits()[w]) == 0;
    exact_exits_[l] = disjoint;
  }
  const int32_t num_synth = nr - 1 - g->start_rule;
  prefix_code_.assign(num_synth, -1);
  prefix_once_ = std::make_unique<std::once_flag[]>(std::max(num_synth, 1));
  budget_kind_.assign(np, BudgetKind::kNone);
  unit_rule_.assign(np, -1);
  entries_.resize(np);
  once_ = std::make_unique<std::once_flag[]>(np);
}

int64_t TokenMaskCache::SymbolUnits(int32_t loop, int32_t pos) const {
  const Symbol& unit = g_->loops[loop].unit;
  switch (g_->next[pos]) {
    case FlatGrammar::Next::kEnd:
      return 0;
    case FlatGrammar::Next::kBytes:
      return !unit.is_rule() && unit.index == g_->next_index[pos] ? 1 : 0;
    case FlatGrammar::Next::kRule: {
      const int32_t y = g_->next_index[pos];
      if (unit == Symbol::Rule(y)) return 1;
      return part_loop_[y] == loop ? max_units_[y] : 0;
    }
  }
  return 0;
}

bool TokenMaskCache::UnitIsPrefixCode(int32_t synth) const {
  const int32_t k = synth - g_->start_rule - 1;
  std::call_once(prefix_once_[k], [&] {
    const FlatGrammar& g = *g_;
    const Symbol unit =
        g.loops[std::find(g.loop_synth.begin(), g.loop_synth.end(), synth) - g.loop_synth.begin()]
            .unit;
    if (!unit.is_rule()) {  // one byte
      prefix_code_[k] = 1;
      return;
    }
    const int32_t u = unit.index;
    if (g.nullable[u]) {
      prefix_code_[k] = 0;
      return;
    }
    // Depth-first over every byte string, merging equal parse states: the unit is a prefix code
    // when no state that completes it can still scan. Units longer than kMaxLen bytes or with
    // more than kMaxStates states are not analysed (their tokens stay uncertain).
    constexpr int kMaxLen = 12;
    constexpr size_t kMaxStates = 4096;
    EarleyStack st(g_);
    std::vector<Item> kernel;
    for (int32_t a : g.alt_starts[u]) kernel.push_back(Item{a, 0});
    st.Reset(kernel);
    absl::flat_hash_set<std::string> seen;
    bool ok = true;
    auto dfs = [&](auto&& self, int depth) -> void {
      for (int b = 0; b < 256 && ok; ++b) {
        if (!st.Push(static_cast<uint8_t>(b))) continue;
        if (st.TopHasCompleted(u, 0)) {
          if (st.TopCanScan()) ok = false;
        } else if (depth + 1 >= kMaxLen || seen.size() >= kMaxStates) {
          ok = false;
        } else {
          std::string sig;
          for (int i = 1; i < st.num_sets(); ++i) {
            for (const Item& it : st.set(i)) {
              sig.append(reinterpret_cast<const char*>(&it), sizeof(it));
            }
            sig.push_back('|');
          }
          if (seen.insert(std::move(sig)).second) self(self, depth + 1);
        }
        st.Truncate(depth + 1);
      }
    };
    dfs(dfs, 0);
    prefix_code_[k] = ok ? 1 : 0;
  });
  return prefix_code_[k] == 1;
}

namespace {
// Up / EndsUp results within one mask (positions of one loop share their ancestors); keyed by
// (stack, set, rule), cleared by TokenMaskCache::BeginMask.
struct WalkMemo {
  const void* stack = nullptr;
  absl::flat_hash_map<uint64_t, int64_t> up;
  absl::flat_hash_map<uint64_t, UnitCounts> ends;
};
thread_local WalkMemo memo;
uint64_t MemoKey(int32_t set, int32_t rule) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(set)) << 32) | static_cast<uint32_t>(rule);
}
}  // namespace

void TokenMaskCache::BeginMask(const EarleyStack& st) {
  memo.stack = &st;
  memo.up.clear();
  memo.ends.clear();
}

int64_t TokenMaskCache::Up(const EarleyStack& st, int32_t set, int32_t rule, int32_t loop,
                           int depth) const {
  if (depth > 64) return -1;
  const bool use_memo = memo.stack == &st;
  if (use_memo) {
    if (auto it = memo.up.find(MemoKey(set, rule)); it != memo.up.end()) return it->second;
  }
  const int64_t v = UpUncached(st, set, rule, loop, depth);
  if (use_memo) memo.up[MemoKey(set, rule)] = v;
  return v;
}

int64_t TokenMaskCache::UpUncached(const EarleyStack& st, int32_t set, int32_t rule, int32_t loop,
                                   int depth) const {
  const FlatGrammar& g = *g_;
  int64_t best = rule == g.loops[loop].top ? 0 : -1;
  for (const Item& j : st.set(set)) {
    if (g.next[j.pos] != FlatGrammar::Next::kRule || g.next_index[j.pos] != rule ||
        part_loop_[g.rule[j.pos]] != loop) {
      continue;
    }
    // "X ::= . X unit": the left-recursive tail can always take another unit.
    if (g.rule[j.pos] == rule && j.origin == set) return kUnbounded;
    const int64_t v = Up(st, j.origin, g.rule[j.pos], loop, depth + 1);
    if (v < 0) return -1;
    best = std::max(best, std::min(kUnbounded, units_after_[j.pos] + v));
  }
  return best;
}

int64_t TokenMaskCache::InUnit(const EarleyStack& st, const Item& it, int32_t unit,
                               int depth) const {
  if (depth > 16) return -1;
  const FlatGrammar& g = *g_;
  const int32_t x = g.rule[it.pos];
  int64_t best = -1;
  if (x == unit) {
    best = 1;  // a use outside the loops: the unit in progress only
    for (const Item& j : st.set(it.origin)) {
      if (g.next[j.pos] != FlatGrammar::Next::kRule || g.next_index[j.pos] != unit) continue;
      const int32_t l = part_loop_[g.rule[j.pos]];
      if (l < 0 || !(g.loops[l].unit == Symbol::Rule(unit))) continue;
      const int64_t v = Up(st, j.origin, g.rule[j.pos], l, 0);
      if (v < 0) return -1;
      best = std::max(best, std::min(kUnbounded, 1 + units_after_[j.pos] + v));
    }
    return best;
  }
  for (const Item& j : st.set(it.origin)) {
    if (g.next[j.pos] != FlatGrammar::Next::kRule || g.next_index[j.pos] != x) continue;
    const int64_t v = InUnit(st, j, unit, depth + 1);
    if (v < 0) return -1;
    best = std::max(best, v);
  }
  return best;
}

UnitCounts UnitCounts::Plus(const UnitCounts& o) const {
  // Shift the denser set by each count of the sparser one.
  if (std::popcount(w[0]) + std::popcount(w[1]) > std::popcount(o.w[0]) + std::popcount(o.w[1])) {
    return o.Plus(*this);
  }
  UnitCounts out;
  for (int word = 0; word < 2; ++word) {
    for (uint64_t bits = w[word]; bits != 0; bits &= bits - 1) {
      const int j = word * 64 + std::countr_zero(bits);
      // o shifted up by j.
      if (j == 0) {
        out |= o;
      } else if (j < 64) {
        out.w[1] |= (o.w[1] << j) | (o.w[0] >> (64 - j));
        out.w[0] |= o.w[0] << j;
      } else {
        out.w[1] |= o.w[0] << (j - 64);
      }
    }
  }
  return out;
}

UnitCounts UnitCounts::Closure(const UnitCounts& step) const {
  UnitCounts out = *this;
  for (;;) {
    UnitCounts next = out;
    next |= out.Plus(step);
    if (next == out) return out;
    out = next;
  }
}

bool TokenMaskCache::EndsUp(const EarleyStack& st, int32_t set, int32_t rule, int32_t loop,
                            int depth, UnitCounts* out) const {
  if (depth > 64) return false;
  const bool use_memo = memo.stack == &st;
  if (use_memo) {
    if (auto it = memo.ends.find(MemoKey(set, rule)); it != memo.ends.end()) {
      *out = it->second;
      return true;
    }
  }
  if (!EndsUpUncached(st, set, rule, loop, depth, out)) return false;
  if (use_memo) memo.ends[MemoKey(set, rule)] = *out;
  return true;
}

bool TokenMaskCache::EndsUpUncached(const EarleyStack& st, int32_t set, int32_t rule, int32_t loop,
                                    int depth, UnitCounts* out) const {
  const FlatGrammar& g = *g_;
  if (rule == g.loops[loop].top) {
    *out = UnitCounts::Only(0);
    return true;
  }
  UnitCounts ends, step;
  bool left_recursive = false;
  for (const Item& j : st.set(set)) {
    if (g.next[j.pos] != FlatGrammar::Next::kRule || g.next_index[j.pos] != rule ||
        part_loop_[g.rule[j.pos]] != loop) {
      continue;
    }
    if (g.rule[j.pos] == rule && j.origin == set) {  // "X ::= . X tail": X again, any times
      step |= rest_counts_[j.pos + 1];
      left_recursive = true;
      continue;
    }
    UnitCounts up;
    if (!EndsUp(st, j.origin, g.rule[j.pos], loop, depth + 1, &up)) return false;
    ends |= rest_counts_[j.pos + 1].Plus(up);
  }
  *out = left_recursive ? ends.Closure(step) : ends;
  return true;
}

bool TokenMaskCache::EndCounts(const EarleyStack& st, const Item& item, UnitCounts* out) const {
  if (budget_kind_[item.pos] == BudgetKind::kLoopStart) {
    *out = rule_counts_[g_->next_index[item.pos]];
    return true;
  }
  if (budget_kind_[item.pos] != BudgetKind::kBoundary) return false;
  const int32_t l = part_loop_[g_->rule[item.pos]];
  UnitCounts up;
  if (!EndsUp(st, item.origin, g_->rule[item.pos], l, 0, &up)) return false;
  *out = rest_counts_[item.pos].Plus(up);
  return true;
}

int64_t TokenMaskCache::Budget(const EarleyStack& st, const Item& item) const {
  switch (budget_kind_[item.pos]) {
    case BudgetKind::kBoundary: {
      const int32_t l = part_loop_[g_->rule[item.pos]];
      const int64_t up = Up(st, item.origin, g_->rule[item.pos], l, 0);
      if (up < 0) return -1;
      return std::min(kUnbounded, SymbolUnits(l, item.pos) + units_after_[item.pos] + up);
    }
    case BudgetKind::kInUnit:
      return InUnit(st, item, unit_rule_[item.pos], 0);
    case BudgetKind::kLoopStart:
      return max_units_[g_->next_index[item.pos]];
    case BudgetKind::kNone:
      break;
  }
  return -1;
}

void TokenMaskCache::Entry::AddSized(int64_t budget, std::span<uint32_t> words) const {
  if (budget < 2 || sized_ids.empty()) return;
  auto add_ids = [&](int64_t above) {
    const auto lo = std::upper_bound(sized_units.begin(), sized_units.end(), above);
    const auto hi = std::upper_bound(sized_units.begin(), sized_units.end(), budget);
    for (auto i = lo - sized_units.begin(); i < hi - sized_units.begin(); ++i) {
      words[sized_ids[i] >> 5] |= uint32_t{1} << (sized_ids[i] & 31);
    }
  };
  if (sized_bits.empty()) return add_ids(1);
  const int64_t levels = static_cast<int64_t>(sized_bits.size());
  const int64_t top = std::min<int64_t>(budget, sized_units.back()) - 2;
  const std::vector<uint32_t>& bits = sized_bits[std::min(top, levels - 1)];
  for (size_t w = 0; w < bits.size(); ++w) words[w] |= bits[w];
  if (top >= levels) add_ids(levels + 1);
}

bool TokenMaskCache::IsKernel(int32_t pos) const {
  return g_->next[pos] != FlatGrammar::Next::kEnd && (g_->dot[pos] > 0 || pos == g_->start_pos);
}

const TokenMaskCache::Entry& TokenMaskCache::Get(int32_t pos) const {
  std::call_once(once_[pos], [&] { entries_[pos] = Compute(pos); });
  return *entries_[pos];
}

void TokenMaskCache::ComputeAll() const {
  for (int32_t p = 0; p < g_->num_positions(); ++p) {
    if (IsKernel(p)) Get(p);
  }
}

std::vector<int32_t> TokenMaskCache::PredictedStarts(int32_t x) const {
  EarleyStack st(g_);
  std::vector<Item> kernel;
  for (int32_t s : g_->alt_starts[x]) kernel.push_back(Item{s, 0});
  st.Reset(kernel);
  std::vector<int32_t> out;
  for (const Item& it : st.set(0)) {
    if (g_->dot[it.pos] == 0) out.push_back(it.pos);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string TokenMaskCache::SubParseKey(int32_t top, const std::vector<int32_t>& chain, int32_t pos,
                                        const ExitFollows& follow_out, int32_t extra) const {
  const FlatGrammar& g = *g_;
  std::string key;
  auto put = [&](int32_t v) { key.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
  auto put_set = [&](const ByteSet& b) {
    key.append(reinterpret_cast<const char*>(b.bits().data()), sizeof(uint64_t) * 4);
  };
  std::vector<int32_t> canon(g.num_rules(), -1);
  std::vector<int32_t> order = {top};
  canon[top] = 0;
  // Puts the rules of order[first..] (and those they reach, appended as met); false past
  // kMaxSharedRules: a sub-parse reaching much of a big grammar is unlikely to recur elsewhere,
  // and its key would cost O(grammar) per position, so it is not shared.
  auto put_rules = [&](size_t first) {
    for (size_t i = first; i < order.size(); ++i) {
      if (order.size() > kMaxSharedRules) return false;
      const int32_t r = order[i];
      if (extra >= 0 && r == g.alias[extra]) {
        // The loop the synthetic rule stands for: its items in the sub-parse never scan (they
        // sit in a context set), so its structure -- the bound -- does not change the entry; only
        // its unit does (put below).
        put(-4);
        continue;
      }
      put(static_cast<int32_t>(g.alt_starts[r].size()));
      for (int32_t p : g.alt_starts[r]) {
        for (;; ++p) {
          if (g.next[p] == FlatGrammar::Next::kEnd) {
            put(-1);
            break;
          }
          if (g.next[p] == FlatGrammar::Next::kBytes) {
            put(-2);
            put_set(g.byte_sets[g.next_index[p]]);
            continue;
          }
          const int32_t y = g.next_index[p];
          if (canon[y] < 0) {
            canon[y] = static_cast<int32_t>(order.size());
            order.push_back(y);
          }
          put(canon[y]);
        }
      }
    }
    return true;
  };
  if (!put_rules(0)) return "";
  // A loop's synthetic rule (reached from nothing): its unit, and the top it completes as.
  if (extra >= 0) {
    const int32_t before_unit = g.SynthBoundary(extra);
    canon[extra] = static_cast<int32_t>(order.size());
    order.push_back(extra);
    put(-3);
    put(canon[g.alias[extra]]);
    if (g.next[before_unit] == FlatGrammar::Next::kRule) {
      // The unit's rules, unless reached already.
      const int32_t u = g.next_index[before_unit];
      if (canon[u] < 0) {
        const size_t first = order.size();
        canon[u] = static_cast<int32_t>(order.size());
        order.push_back(u);
        if (!put_rules(first)) return "";
      }
      put(canon[u]);
    } else {
      put(-2);
      put_set(g.byte_sets[g.next_index[before_unit]]);
    }
  }
  // A position as (canonical rule, alternative, dot).
  auto put_pos = [&](int32_t p) {
    const auto& starts = g.alt_starts[g.rule[p]];
    const auto alt = std::upper_bound(starts.begin(), starts.end(), p) - starts.begin() - 1;
    put(canon[g.rule[p]]);
    put(static_cast<int32_t>(alt));
    put(g.dot[p]);
  };
  put(static_cast<int32_t>(chain.size()));
  for (int32_t q : chain) put_pos(q);
  put_pos(pos);
  for (int32_t level = 0; level <= static_cast<int32_t>(chain.size()); ++level) {
    for (int32_t r : order) put_set(follow_out.Get(level, r));
  }
  return key;
}

bool TokenMaskCache::ReachesMoreThan(int32_t x, size_t limit) const {
  std::vector<int32_t> order = {x};
  thread_local std::vector<uint8_t> seen;
  seen.assign(g_->num_rules(), 0);
  seen[x] = 1;
  for (size_t i = 0; i < order.size(); ++i) {
    for (int32_t p : g_->alt_starts[order[i]]) {
      for (; g_->next[p] != FlatGrammar::Next::kEnd; ++p) {
        if (g_->next[p] != FlatGrammar::Next::kRule || seen[g_->next_index[p]]) continue;
        seen[g_->next_index[p]] = 1;
        order.push_back(g_->next_index[p]);
        if (order.size() > limit) return true;
      }
    }
  }
  return false;
}

bool TokenMaskCache::ParentChain(int32_t* x, std::vector<int32_t>* chain, size_t max_chain) const {
  // While every item that can wait for rule X (outside X's own predictions) is at one position q,
  // each real X item has a parent at q, so q is simulated too and X completing is no exit.
  const size_t kMaxChain = max_chain;
  std::vector<int32_t> rules_seen = {*x};
  while (chain->size() < kMaxChain) {
    const std::vector<int32_t> own = PredictedStarts(*x);
    int32_t parent = -1, count = 0;
    for (int32_t q : refs_[*x]) {
      if (std::binary_search(own.begin(), own.end(), q)) continue;
      parent = q;
      ++count;
    }
    if (count != 1) return true;
    const int32_t w = g_->rule[parent];
    if (std::find(rules_seen.begin(), rules_seen.end(), w) != rules_seen.end()) return false;
    // A sub-parse reaching more than kMaxSharedRules rules is not shared across grammars (its key
    // would cost O(grammar)), so every compile would walk the vocabulary for it again: stop below.
    if (ReachesMoreThan(w, kMaxSharedRules)) return false;
    chain->push_back(parent);
    rules_seen.push_back(w);
    *x = w;
  }
  return false;
}

std::shared_ptr<const TokenMaskCache::Entry> TokenMaskCache::Compute(int32_t pos) const {
  const FlatGrammar& g = *g_;
  // Between two units of a counted loop: the loop's entry (its synthetic rule standing for the
  // top, with the top's context simulated) when exits are exact, else the unit's shared entry.
  // A plain Star / Plus is one left-recursive rule whose chain of unique parents the sub-parse
  // below follows exactly (closing quote and all), so it keeps its own entries.
  if (const int32_t l = part_loop_[g.rule[pos]];
      l >= 0 && (g.loops[l].parts.size() > 1 || max_units_[g.loops[l].top] < kUnbounded) &&
      UnitIsPrefixCode(g.loop_synth[l])) {
    int32_t top = g.loops[l].top;
    std::vector<int32_t> above;
    ParentChain(&top, &above, kLoopContext);
    const int32_t seed = exact_exits_[l] && !above.empty() ? g.SynthAfterUnit(g.loop_alias_synth[l])
                                                           : g.SynthBoundary(g.loop_synth[l]);
    Get(seed);
    budget_kind_[pos] = BudgetKind::kBoundary;
    return entries_[seed];
  }
  // Just before a counted loop, at the one parent its entry simulates ('"' . R '"'): the loop's
  // entry too, with the loop's whole count left (walking the vocabulary through the loop's own
  // rules instead would cost a walk per bound and context: ~50-90 ms at 128k each).
  if (g.next[pos] == FlatGrammar::Next::kRule) {
    const int32_t y = g.next_index[pos];
    const int32_t l = part_loop_[y];
    if (l >= 0 && g.loops[l].top == y && units_only_[l] && exact_exits_[l] && max_units_[y] >= 1 &&
        (g.loops[l].parts.size() > 1 || max_units_[y] < kUnbounded) &&
        UnitIsPrefixCode(g.loop_synth[l])) {
      int32_t top = y;
      std::vector<int32_t> above;
      ParentChain(&top, &above, kLoopContext);
      if (above.size() == 1 && above[0] == pos) {
        const int32_t seed = g.SynthAfterUnit(g.loop_alias_synth[l]);
        Get(seed);
        budget_kind_[pos] = BudgetKind::kLoopStart;
        return entries_[seed];
      }
    }
  }
  // The chain of parents simulated above p: chain[0] waits for lhs(p), chain[1] for lhs(chain[0]),
  // ... A loop's synthetic seed "S ::= S u ." stands for its top: the chain starts above that.
  const int32_t alias = g.alias[g.rule[pos]];
  std::vector<int32_t> chain;
  int32_t x = alias >= 0 ? alias : g.rule[pos];
  if (ParentChain(&x, &chain, alias >= 0 ? kLoopContext : 8) && alias < 0) {
    // Inside a loop's unit: the unit repeats (its synthetic rule) above it, counted.
    const int32_t synth = unit_synth_[x];
    if (synth >= 0 && UnitIsPrefixCode(synth)) {
      chain.push_back(g.SynthBoundary(synth));
      budget_kind_[pos] = BudgetKind::kInUnit;
      unit_rule_[pos] = x;
      x = synth;
    }
  }
  const int m = static_cast<int>(chain.size());
  // The synthetic loop counting units (-1: none), the set its items start in, its unit rule (-1
  // for a byte unit) and the unit's first bytes.
  const int32_t loop_rule = alias >= 0 ? g.rule[pos] : g.is_synthetic(x) ? x : -1;
  const int32_t loop_origin = alias >= 0 ? m : 0;
  int32_t loop_unit = -1;
  ByteSet unit_first;
  if (loop_rule >= 0) {
    const int32_t before_unit = g.SynthBoundary(loop_rule);  // "S ::= S . u"
    if (g.next[before_unit] == FlatGrammar::Next::kRule) loop_unit = g.next_index[before_unit];
    unit_first = first_rest_[before_unit];
  }
  // Set 0: the predictions of the top rule; set i (1..m): chain[m - i] with origin i - 1 and its
  // closure; set m + 1: the seed p with origin m.
  // A loop's synthetic rule is predicted in set m too, beside the item waiting for its top.
  EarleyStack sub(g_);
  std::vector<Item> kernel;
  for (int32_t s : g.alt_starts[x]) kernel.push_back(Item{s, 0});
  sub.Reset(kernel);
  for (int i = 1; i <= m; ++i) {
    kernel.assign(1, Item{chain[m - i], i - 1});
    if (alias >= 0 && i == m) {
      for (int32_t s : g.alt_starts[loop_rule]) kernel.push_back(Item{s, m});
    }
    sub.PushKernel(kernel);
  }
  // Exits: a completion with origin r at position q (next symbol Y) is simulated when q is one of
  // set r's own predictions (dot 0: its origin must be r) or set r's chain item; other
  // references to Y may sit in the unseen context, so the bytes that can follow them there make
  // the token "uncertain".
  // Only rules referenced at a simulated position differ from their grammar-wide follow set.
  ExitFollows follow_out;
  follow_out.base = &follow_;
  follow_out.overrides.resize(m + 1);
  thread_local std::vector<uint8_t> simulated;
  simulated.assign(g.num_positions(), 0);
  for (int r = 0; r <= m; ++r) {
    std::vector<int32_t> sim;
    for (const Item& it : sub.set(r)) {
      if (g.dot[it.pos] == 0 && it.origin == r) sim.push_back(it.pos);
    }
    if (r >= 1) sim.push_back(chain[m - r]);
    std::vector<int32_t> rules;
    for (int32_t q : sim) {
      simulated[q] = 1;
      if (g.next[q] == FlatGrammar::Next::kRule) rules.push_back(g.next_index[q]);
    }
    std::sort(rules.begin(), rules.end());
    rules.erase(std::unique(rules.begin(), rules.end()), rules.end());
    for (int32_t y : rules) {
      if (g.is_synthetic(y) && g.alias[y] < 0) {  // the loop ends: what follows its loops
        follow_out.overrides[r].emplace_back(y, follow_[y]);
        continue;
      }
      ByteSet f;
      for (int32_t q : refs_[g.is_synthetic(y) ? g.alias[y] : y]) {
        if (simulated[q]) continue;
        // The loops of the unit being counted are what the synthetic rule simulates.
        if (y == loop_unit && part_loop_[g.rule[q]] >= 0 &&
            g.loops[part_loop_[g.rule[q]]].unit == Symbol::Rule(y)) {
          continue;
        }
        f |= first_rest_[q + 1];
        if (rest_nullable_[q + 1]) f |= follow_[g.rule[q]];
      }
      follow_out.overrides[r].emplace_back(y, f);
    }
    for (int32_t q : sim) simulated[q] = 0;
  }
  std::string key = SubParseKey(x, chain, pos, follow_out, alias >= 0 ? loop_rule : -1);
  if (!key.empty()) key.push_back(loop_rule >= 0 ? 'c' : 'p');  // counted: a different entry
  SharedTokenClasses& shared = vocab_->shared_token_classes();
  if (!key.empty()) {
    std::lock_guard<std::mutex> lock(shared.mu);
    if (auto it = shared.entries.find(key); it != shared.entries.end()) {
      ++shared.hits;
      return it->second;
    }
    ++shared.misses;
  }
  auto entry = std::make_shared<Entry>();
  Entry* e = entry.get();
  sub.SetExitTracking(m + 1, &follow_out);
  const Item seed{pos, m};
  sub.PushKernel({&seed, 1});
  const int kBase = m + 2;  // context sets, then the seed's set (no byte consumed)

  const auto sorted = vocab_->sorted_ids();
  const auto lcp = vocab_->lcp();
  const int32_t n = static_cast<int32_t>(sorted.size());
  std::vector<uint8_t> unsure(1, 0);  // unsure[d]: a live exit happened within the first d bytes
  // When counting: units[d] = units completed within the first d bytes, at_end[d] = one ends at d.
  // exited[d]: the units after which the token left the loop within the first d bytes (-1: it
  // did not) -- at the first byte after a unit that cannot start one (exact exits only).
  std::vector<int32_t> units(1, 0);
  std::vector<uint8_t> at_end(1, alias >= 0 ? 1 : 0);
  std::vector<int32_t> exited(1, -1);
  std::vector<std::pair<int32_t, int32_t>> sized;  // (units touched, id)
  std::vector<std::pair<int32_t, int32_t>> ends;   // (units before leaving, id)
  int depth = 0;
  for (int32_t i = 0; i < n;) {
    const std::string_view t = vocab_->sorted_bytes(i);
    if (depth > lcp[i]) {
      depth = lcp[i];
      sub.Truncate(kBase + depth);
    }
    if (unsure.size() < t.size() + 1) {
      unsure.resize(t.size() + 1);
      units.resize(t.size() + 1);
      at_end.resize(t.size() + 1);
      exited.resize(t.size() + 1);
    }
    bool ok = true;
    while (depth < static_cast<int>(t.size())) {
      const uint8_t b = static_cast<uint8_t>(t[depth]);
      const bool live = unsure[depth] || (depth >= 1 && sub.exit_follow(kBase - 1 + depth).Has(b));
      if (!sub.Push(b)) {
        const int32_t end = vocab_->SubtreeEnd(i, depth + 1);
        // A token that left a loop (alias) with no unit more is decided where the loop's parent
        // goes on: wherever the loop can end here, its completion put that parent position in
        // the set, with an entry of its own that sees more context; elsewhere it is invalid.
        if (live && !(loop_rule >= 0 && alias >= 0 && exited[depth] == 0)) {
          for (int32_t j = i; j < end; ++j) e->uncertain.push_back(j);
        }
        i = end;
        ok = false;
        break;
      }
      ++depth;
      unsure[depth] = live;
      if (loop_rule >= 0) {
        exited[depth] = exited[depth - 1] >= 0                                  ? exited[depth - 1]
                        : alias >= 0 && at_end[depth - 1] && !unit_first.Has(b) ? units[depth - 1]
                                                                                : -1;
        at_end[depth] = exited[depth] < 0 && sub.TopHasCompleted(loop_rule, loop_origin);
        units[depth] = units[depth - 1] + at_end[depth];
      }
    }
    if (!ok) continue;
    if (loop_rule >= 0 && exited[depth] >= 0) {
      if (exited[depth] < UnitCounts::kMax) {
        ends.emplace_back(exited[depth], sorted[i]);
      } else {
        e->uncertain.push_back(i);  // longer than the counts EndCounts tracks
      }
      ++i;
      continue;
    }
    const int32_t touched = loop_rule < 0 ? 1 : units[depth] + (at_end[depth] ? 0 : 1);
    if (touched <= 1) {
      e->accepted_ids.push_back(sorted[i]);
    } else {
      sized.emplace_back(touched, sorted[i]);
    }
    ++i;
  }
  std::sort(ends.begin(), ends.end());
  for (const auto& [u, id] : ends) {
    e->end_units.push_back(u);
    e->end_ids.push_back(id);
  }
  std::sort(sized.begin(), sized.end());
  for (const auto& [u, id] : sized) {
    e->sized_units.push_back(u);
    e->sized_ids.push_back(id);
  }
  if (e->sized_ids.size() > static_cast<size_t>(vocab_->bitmask_words()) / 2) {
    const int levels = std::min(kSizedLevels, e->sized_units.back() - 1);
    e->sized_bits.assign(levels, std::vector<uint32_t>(vocab_->bitmask_words(), 0));
    for (size_t j = 0; j < sized.size(); ++j) {
      const int32_t id = e->sized_ids[j];
      for (int k = std::max(0, e->sized_units[j] - 2); k < levels; ++k) {
        e->sized_bits[k][id >> 5] |= uint32_t{1} << (id & 31);
      }
    }
  }
  // A bitmask costs bitmask_words() words to store and to OR into each mask; ids cost one each.
  if (e->accepted_ids.size() > static_cast<size_t>(vocab_->bitmask_words()) / 2) {
    e->accepted_bits.assign(vocab_->bitmask_words(), 0);
    for (int32_t id : e->accepted_ids) e->accepted_bits[id >> 5] |= uint32_t{1} << (id & 31);
    e->accepted_ids = {};
  } else {
    std::sort(e->accepted_ids.begin(), e->accepted_ids.end());
    e->accepted_ids.shrink_to_fit();
  }
  e->uncertain.shrink_to_fit();
  const size_t bytes = key.size() + sizeof(Entry) + e->accepted_ids.size() * sizeof(int32_t) +
                       e->accepted_bits.size() * sizeof(uint32_t) +
                       e->uncertain.size() * sizeof(int32_t) +
                       (e->sized_ids.size() + e->end_ids.size()) * 2 * sizeof(int32_t) +
                       e->sized_bits.size() * vocab_->bitmask_words() * sizeof(uint32_t);
  if (key.empty()) return entry;
  std::lock_guard<std::mutex> lock(shared.mu);
  if (shared.bytes + bytes <= SharedTokenClasses::kMaxBytes) {
    // Another grammar may have computed the same entry meanwhile: keep the first.
    auto [it, fresh] = shared.entries.emplace(key, entry);
    if (fresh) shared.bytes += bytes;
    return it->second;
  }
  return entry;
}

}  // namespace muse::structured::internal
