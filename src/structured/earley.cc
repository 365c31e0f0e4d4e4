#include "src/structured/earley.h"

#include <algorithm>
#include <bit>

namespace muse::structured::internal {

FlatGrammar::FlatGrammar(const Grammar& g) {
  byte_sets = g.byte_sets;
  start_rule = static_cast<int32_t>(g.rules.size());
  alt_starts.resize(g.rules.size() + 1);
  auto add_alt = [&](int32_t r, const Alternative& alt) {
    alt_starts[r].push_back(num_positions());
    for (size_t d = 0; d <= alt.size(); ++d) {
      rule.push_back(r);
      dot.push_back(static_cast<int32_t>(d));
      if (d == alt.size()) {
        next.push_back(Next::kEnd);
        next_index.push_back(-1);
      } else {
        next.push_back(alt[d].is_rule() ? Next::kRule : Next::kBytes);
        next_index.push_back(alt[d].index);
      }
    }
  };
  for (size_t r = 0; r < g.rules.size(); ++r) {
    for (const Alternative& alt : g.rules[r].alternatives) add_alt(static_cast<int32_t>(r), alt);
  }
  start_pos = num_positions();
  add_alt(start_rule, Alternative{Symbol::Rule(g.root)});
  num_real_positions = num_positions();
  loops = g.loops;
  std::vector<Symbol> units;
  for (const Loop& loop : loops) {
    const auto it = std::find(units.begin(), units.end(), loop.unit);
    int32_t synth = start_rule + 1 + static_cast<int32_t>(it - units.begin());
    if (it == units.end()) {
      units.push_back(loop.unit);
      alt_starts.emplace_back();
      add_alt(synth, Alternative{Symbol::Rule(synth), loop.unit});
      add_alt(synth, Alternative{});
    }
    loop_synth.push_back(synth);
  }
  for (const Loop& loop : loops) {
    const int32_t synth = static_cast<int32_t>(alt_starts.size());
    alt_starts.emplace_back();
    add_alt(synth, Alternative{Symbol::Rule(synth), loop.unit});
    add_alt(synth, Alternative{});
    loop_alias_synth.push_back(synth);
  }
  alias.assign(alt_starts.size(), -1);
  for (size_t l = 0; l < loops.size(); ++l) alias[loop_alias_synth[l]] = loops[l].top;

  // Nullable rules by fixed point.
  nullable.assign(num_rules(), 0);
  for (bool changed = true; changed;) {
    changed = false;
    for (int32_t r = 0; r < num_rules(); ++r) {
      if (nullable[r]) continue;
      for (int32_t p : alt_starts[r]) {
        while (next[p] == Next::kRule && nullable[next_index[p]]) ++p;
        if (next[p] == Next::kEnd) {
          nullable[r] = 1;
          changed = true;
          break;
        }
      }
    }
  }
}

EarleyStack::EarleyStack(const FlatGrammar* g) : g_(g), predicted_(g->num_rules(), 0) {
  table_.assign(64, 0);
  table_stamp_.assign(64, 0);
}

const ByteSet& ExitFollows::Get(int32_t level, int32_t rule) const {
  const auto& o = overrides[level];
  auto it =
      std::lower_bound(o.begin(), o.end(), rule,
                       [](const std::pair<int32_t, ByteSet>& e, int32_t r) { return e.first < r; });
  return it != o.end() && it->first == rule ? it->second : (*base)[rule];
}

void EarleyStack::SetExitTracking(int32_t num_context, const ExitFollows* follow) {
  num_context_ = num_context;
  follow_ = follow;
}

void EarleyStack::Reset(std::span<const Item> kernel) {
  items_.clear();
  set_begin_.assign(1, 0);
  exit_follow_.clear();
  PushKernel(kernel);
}

void EarleyStack::PushKernel(std::span<const Item> kernel) {
  const int k = num_sets();
  if (++stamp_ == 0) {  // wrapped: forget every old stamp
    std::fill(predicted_.begin(), predicted_.end(), 0);
    std::fill(table_stamp_.begin(), table_stamp_.end(), 0);
    stamp_ = 1;
  }
  if (follow_) exit_follow_.resize(k + 1), exit_follow_[k] = ByteSet();
  for (const Item& it : kernel) Add(k, it);
  Close(k);
}

bool EarleyStack::Push(uint8_t b) {
  const int k = num_sets();
  const int32_t begin = set_begin_[k - 1], end = set_begin_[k];
  if (++stamp_ == 0) {
    std::fill(predicted_.begin(), predicted_.end(), 0);
    std::fill(table_stamp_.begin(), table_stamp_.end(), 0);
    stamp_ = 1;
  }
  if (follow_) exit_follow_.resize(k + 1), exit_follow_[k] = ByteSet();
  // Scanned items are distinct (distinct sources give distinct successors), no dedup needed
  // here, but Add keeps the table in sync for the closure.
  for (int32_t i = begin; i < end; ++i) {
    const Item it = items_[i];
    if (g_->next[it.pos] == FlatGrammar::Next::kBytes &&
        g_->byte_sets[g_->next_index[it.pos]].Has(b)) {
      Add(k, Item{it.pos + 1, it.origin});
    }
  }
  if (static_cast<int32_t>(items_.size()) == end) return false;
  Close(k);
  return true;
}

void EarleyStack::Truncate(int num_sets) {
  items_.resize(set_begin_[num_sets]);
  set_begin_.resize(num_sets + 1);
  if (follow_ && static_cast<int>(exit_follow_.size()) > num_sets) exit_follow_.resize(num_sets);
}

namespace {
// Fibonacci hashing: the top bits of the product depend on every bit of the key.
size_t Slot(uint64_t key, size_t cap) {
  return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> (64 - std::countr_zero(cap)));
}
}  // namespace

void EarleyStack::Add(int k, Item it) {
  const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(it.pos)) << 32) |
                       static_cast<uint32_t>(it.origin);
  const size_t size = items_.size() - set_begin_[k];
  if ((size + 1) * 2 > table_.size()) {
    // Grow and re-insert the current set.
    const size_t cap = table_.size() * 4;
    table_.assign(cap, 0);
    table_stamp_.assign(cap, 0);
    for (size_t i = set_begin_[k]; i < items_.size(); ++i) {
      const uint64_t k2 = (static_cast<uint64_t>(static_cast<uint32_t>(items_[i].pos)) << 32) |
                          static_cast<uint32_t>(items_[i].origin);
      size_t h = Slot(k2, cap);
      for (;; ++h) {
        h &= cap - 1;
        if (table_stamp_[h] != stamp_) {
          table_stamp_[h] = stamp_;
          table_[h] = k2;
          break;
        }
      }
    }
  }
  const size_t mask = table_.size() - 1;
  for (size_t h = Slot(key, table_.size());; ++h) {
    h &= mask;
    if (table_stamp_[h] != stamp_) {
      table_stamp_[h] = stamp_;
      table_[h] = key;
      items_.push_back(it);
      return;
    }
    if (table_[h] == key) return;
  }
}

void EarleyStack::Close(int k) {
  const FlatGrammar& g = *g_;
  for (size_t i = set_begin_[k]; i < items_.size(); ++i) {
    const Item it = items_[i];
    switch (g.next[it.pos]) {
      case FlatGrammar::Next::kBytes:
        break;
      case FlatGrammar::Next::kRule: {
        const int32_t y = g.next_index[it.pos];
        if (predicted_[y] != stamp_) {
          predicted_[y] = stamp_;
          for (int32_t p : g.alt_starts[y]) Add(k, Item{p, k});
        }
        // A nullable rule may derive nothing here: step over it now (Aycock & Horspool), since
        // its empty completion may already have been processed.
        if (g.nullable[y]) Add(k, Item{it.pos + 1, it.origin});
        break;
      }
      case FlatGrammar::Next::kEnd: {
        const int32_t y = g.rule[it.pos];
        if (it.origin == k) break;  // empty completion: done by the nullable step above
        if (follow_ && it.origin < num_context_ && k > num_context_) {
          exit_follow_[k] |= follow_->Get(it.origin, y);
        }
        const int32_t b = set_begin_[it.origin], e = set_begin_[it.origin + 1];
        const int32_t as = g.alias[y];  // a synthetic loop completes as its top (sub-parses only)
        for (int32_t j = b; j < e; ++j) {
          const Item w = items_[j];
          if (g.next[w.pos] == FlatGrammar::Next::kRule &&
              (g.next_index[w.pos] == y || g.next_index[w.pos] == as)) {
            Add(k, Item{w.pos + 1, w.origin});
          }
        }
        break;
      }
    }
  }
  set_begin_.push_back(static_cast<int32_t>(items_.size()));
}

bool EarleyStack::TopCanScan() const {
  for (const Item& it : top()) {
    if (g_->next[it.pos] == FlatGrammar::Next::kBytes) return true;
  }
  return false;
}

bool EarleyStack::TopHasCompleted(int32_t rule, int32_t origin) const {
  for (const Item& it : top()) {
    if (it.origin == origin && g_->next[it.pos] == FlatGrammar::Next::kEnd &&
        g_->rule[it.pos] == rule) {
      return true;
    }
  }
  return false;
}

}  // namespace muse::structured::internal
