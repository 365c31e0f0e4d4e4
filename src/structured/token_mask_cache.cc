#include "src/structured/token_mask_cache.h"

#include <algorithm>

namespace muse::structured::internal {

namespace {
constexpr size_t kMaxSharedRules = 64;
}  // namespace

TokenMaskCache::TokenMaskCache(const FlatGrammar* g, const TokenVocabulary* vocab)
    : g_(g), vocab_(vocab) {
  const int32_t np = g->num_positions(), nr = g->num_rules();
  std::vector<ByteSet> first(nr);
  first_rest_.assign(np, ByteSet());
  rest_nullable_.assign(np, 0);
  refs_.assign(nr, {});
  for (int32_t p = 0; p < np; ++p) {
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
  entries_.resize(np);
  once_ = std::make_unique<std::once_flag[]>(np);
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
                                        const ExitFollows& follow_out) const {
  const FlatGrammar& g = *g_;
  std::string key;
  auto put = [&](int32_t v) { key.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
  auto put_set = [&](const ByteSet& b) {
    key.append(reinterpret_cast<const char*>(b.bits().data()), sizeof(uint64_t) * 4);
  };
  std::vector<int32_t> canon(g.num_rules(), -1);
  std::vector<int32_t> order = {top};
  canon[top] = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    // A sub-parse reaching much of a big grammar is unlikely to recur elsewhere, and its key
    // would cost O(grammar) per position: not shared.
    if (order.size() > kMaxSharedRules) return "";
    const int32_t r = order[i];
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

std::shared_ptr<const TokenMaskCache::Entry> TokenMaskCache::Compute(int32_t pos) const {
  const FlatGrammar& g = *g_;
  // The chain of parents simulated above p: while every item that can wait for rule X (outside
  // X's own predictions) is at one position q, each real X item has a parent at q, so q is
  // simulated too and X completing is no exit. chain[0] waits for lhs(p), chain[1] for
  // lhs(chain[0]), ...
  constexpr size_t kMaxChain = 8;
  std::vector<int32_t> chain;
  int32_t x = g.rule[pos];
  std::vector<int32_t> rules_seen = {x};
  while (chain.size() < kMaxChain) {
    const std::vector<int32_t> own = PredictedStarts(x);
    int32_t parent = -1, count = 0;
    for (int32_t q : refs_[x]) {
      if (std::binary_search(own.begin(), own.end(), q)) continue;
      parent = q;
      ++count;
    }
    if (count != 1) break;
    const int32_t w = g.rule[parent];
    if (std::find(rules_seen.begin(), rules_seen.end(), w) != rules_seen.end()) break;
    chain.push_back(parent);
    rules_seen.push_back(w);
    x = w;
  }
  const int m = static_cast<int>(chain.size());
  // Set 0: the predictions of the top rule; set i (1..m): chain[m - i] with origin i - 1 and its
  // closure; set m + 1: the seed p with origin m.
  EarleyStack sub(g_);
  std::vector<Item> kernel;
  for (int32_t s : g.alt_starts[x]) kernel.push_back(Item{s, 0});
  sub.Reset(kernel);
  for (int i = 1; i <= m; ++i) {
    const Item it{chain[m - i], i - 1};
    sub.PushKernel({&it, 1});
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
      ByteSet f;
      for (int32_t q : refs_[y]) {
        if (simulated[q]) continue;
        f |= first_rest_[q + 1];
        if (rest_nullable_[q + 1]) f |= follow_[g.rule[q]];
      }
      follow_out.overrides[r].emplace_back(y, f);
    }
    for (int32_t q : sim) simulated[q] = 0;
  }
  const std::string key = SubParseKey(x, chain, pos, follow_out);
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
  int depth = 0;
  for (int32_t i = 0; i < n;) {
    const std::string_view t = vocab_->sorted_bytes(i);
    if (depth > lcp[i]) {
      depth = lcp[i];
      sub.Truncate(kBase + depth);
    }
    if (unsure.size() < t.size() + 1) unsure.resize(t.size() + 1);
    bool ok = true;
    while (depth < static_cast<int>(t.size())) {
      const uint8_t b = static_cast<uint8_t>(t[depth]);
      const bool live = unsure[depth] || (depth >= 1 && sub.exit_follow(kBase - 1 + depth).Has(b));
      if (!sub.Push(b)) {
        const int32_t end = vocab_->SubtreeEnd(i, depth + 1);
        if (live) {
          for (int32_t j = i; j < end; ++j) e->uncertain.push_back(j);
        }
        i = end;
        ok = false;
        break;
      }
      ++depth;
      unsure[depth] = live;
    }
    if (!ok) continue;
    e->accepted_ids.push_back(sorted[i]);
    ++i;
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
                       e->uncertain.size() * sizeof(int32_t);
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
