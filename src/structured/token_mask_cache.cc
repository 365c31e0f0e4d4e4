#include "src/structured/token_mask_cache.h"

#include <algorithm>

namespace muse::structured::internal {

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
  std::call_once(once_[pos], [&] {
    auto e = std::make_unique<Entry>();
    Compute(pos, e.get());
    entries_[pos] = std::move(e);
  });
  return *entries_[pos];
}

void TokenMaskCache::ComputeAll() const {
  for (int32_t p = 0; p < g_->num_positions(); ++p) {
    if (IsKernel(p)) Get(p);
  }
}

void TokenMaskCache::Compute(int32_t pos, Entry* e) const {
  const FlatGrammar& g = *g_;
  const int32_t x = g.rule[pos];
  EarleyStack sub(g_);
  // Set 0 stands for the set where X was predicted: X's own predictions, origin 0.
  std::vector<Item> kernel;
  for (int32_t s : g.alt_starts[x]) kernel.push_back(Item{s, 0});
  sub.Reset(kernel);
  // A completion with origin 0 at position q (next symbol Y) is simulated when q is one of set 0's
  // predictions (dot 0: its origin must be X's). Other references to Y may sit in the unseen
  // context, so they make the bytes that can follow them "uncertain".
  std::vector<uint8_t> predicted(g.num_positions(), 0);
  for (const Item& it : sub.set(0)) {
    if (g.dot[it.pos] == 0) predicted[it.pos] = 1;
  }
  std::vector<ByteSet> follow_out(g.num_rules());
  for (int32_t y = 0; y < g.num_rules(); ++y) {
    for (int32_t q : refs_[y]) {
      if (predicted[q]) continue;
      follow_out[y] |= first_rest_[q + 1];
      if (rest_nullable_[q + 1]) follow_out[y] |= follow_[g.rule[q]];
    }
  }
  sub.SetExitTracking(0, &follow_out);
  const Item seed{pos, 0};
  sub.PushKernel({&seed, 1});
  constexpr int kBase = 2;  // sets 0 (context) and 1 (seed, no byte consumed)

  const auto sorted = vocab_->sorted_ids();
  const auto lcp = vocab_->lcp();
  const int32_t n = static_cast<int32_t>(sorted.size());
  std::vector<uint8_t> unsure(1, 0);  // unsure[d]: a live exit happened within the first d bytes
  int depth = 0;
  for (int32_t i = 0; i < n;) {
    const std::string& t = vocab_->bytes(sorted[i]);
    if (depth > lcp[i]) {
      depth = lcp[i];
      sub.Truncate(kBase + depth);
    }
    if (unsure.size() < t.size() + 1) unsure.resize(t.size() + 1);
    bool ok = true;
    while (depth < static_cast<int>(t.size())) {
      const uint8_t b = static_cast<uint8_t>(t[depth]);
      const bool live = unsure[depth] || (depth >= 1 && sub.exit_follow(depth + 1).Has(b));
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
    if (e->accepted.empty()) e->accepted.assign(vocab_->bitmask_words(), 0);
    e->accepted[sorted[i] >> 5] |= uint32_t{1} << (sorted[i] & 31);
    ++i;
  }
}

}  // namespace muse::structured::internal
