#include "src/structured/matcher.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "src/structured/earley.h"
#include "src/structured/token_mask_cache.h"

namespace muse::structured {

using internal::EarleyStack;
using internal::FlatGrammar;
using internal::Item;
using internal::TokenMaskCache;

struct CompiledGrammar::Impl {
  Impl(Grammar g, std::shared_ptr<const TokenVocabulary> v)
      : grammar(std::move(g)), vocab(std::move(v)), flat(grammar), cache(&flat, vocab.get()) {}
  Grammar grammar;
  std::shared_ptr<const TokenVocabulary> vocab;
  FlatGrammar flat;
  TokenMaskCache cache;
};

namespace {

absl::Status Validate(const Grammar& g) {
  if (g.rules.empty()) return absl::InvalidArgumentError("grammar has no rules");
  const int32_t nr = static_cast<int32_t>(g.rules.size());
  const int32_t nb = static_cast<int32_t>(g.byte_sets.size());
  if (g.root < 0 || g.root >= nr) {
    return absl::InvalidArgumentError(absl::StrCat("grammar root ", g.root, " is not a rule"));
  }
  for (const Rule& r : g.rules) {
    for (const Alternative& alt : r.alternatives) {
      for (const Symbol& s : alt) {
        const int32_t limit = s.is_rule() ? nr : nb;
        if (s.index < 0 || s.index >= limit) {
          return absl::InvalidArgumentError(absl::StrCat("rule ", r.name, ": ",
                                                         s.is_rule() ? "rule" : "byte set",
                                                         " index ", s.index, " out of range"));
        }
        if (!s.is_rule() && g.byte_sets[s.index].empty()) {
          return absl::InvalidArgumentError(absl::StrCat("rule ", r.name, ": empty byte set"));
        }
      }
    }
  }
  // Loop hints must describe their structure truly, or masks built on them would be wrong: every
  // part derives units only (the top may begin with one other symbol: a list's first item), and
  // parts other than the top are referred to only from within the loop.
  std::vector<int32_t> owner(nr, -1);
  for (size_t l = 0; l < g.loops.size(); ++l) {
    const Loop& loop = g.loops[l];
    const int32_t unit_limit = loop.unit.is_rule() ? nr : nb;
    if (loop.top < 0 || loop.top >= nr || loop.unit.index < 0 || loop.unit.index >= unit_limit ||
        std::find(loop.parts.begin(), loop.parts.end(), loop.top) == loop.parts.end()) {
      return absl::InvalidArgumentError(absl::StrCat("loop ", l, ": index out of range"));
    }
    for (int32_t x : loop.parts) {
      if (x < 0 || x >= nr || owner[x] >= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("loop ", l, ": part ", x, " out of range or in two loops"));
      }
      owner[x] = static_cast<int32_t>(l);
    }
  }
  for (int32_t r = 0; r < nr; ++r) {
    for (const Alternative& alt : g.rules[r].alternatives) {
      for (size_t i = 0; i < alt.size(); ++i) {
        const Symbol& s = alt[i];
        const bool part = s.is_rule() && owner[s.index] >= 0;
        if (owner[r] >= 0) {
          const Loop& loop = g.loops[owner[r]];
          const bool ok =
              s == loop.unit || (part && owner[s.index] == owner[r]) || (r == loop.top && i == 0);
          if (!ok) {
            return absl::InvalidArgumentError(absl::StrCat(
                "loop ", owner[r], ": rule ", g.rules[r].name, " derives more than units"));
          }
        } else if (part && s.index != g.loops[owner[s.index]].top) {
          return absl::InvalidArgumentError(absl::StrCat("loop ", owner[s.index], ": rule ",
                                                         g.rules[s.index].name,
                                                         " is referred to from outside the loop"));
        }
      }
    }
  }
  return absl::OkStatus();
}

void SetBit(std::span<uint32_t> words, int32_t id) { words[id >> 5] |= uint32_t{1} << (id & 31); }
bool HasBit(std::span<const uint32_t> words, int32_t id) {
  return (words[id >> 5] >> (id & 31)) & 1;
}

// Walks the sorted vocabulary indices `cands` (ascending) as a trie on the real parser: pop to
// the common prefix with the bytes pushed so far, push the rest; at the first rejected byte skip
// every following candidate under that prefix. Sets the bits of accepted tokens; candidates whose
// bit is already set are skipped. Restores the parser before returning.
template <typename Candidates>
void WalkTrie(EarleyStack& st, const TokenVocabulary& vocab, const Candidates& cands,
              std::span<uint32_t> words) {
  const auto sorted = vocab.sorted_ids();
  const int base = st.num_sets();
  std::string cur;  // bytes pushed above `base`
  const size_t n = cands.size();
  for (size_t ci = 0; ci < n;) {
    const int32_t i = cands[ci];
    const int32_t id = sorted[i];
    if (HasBit(words, id)) {
      ++ci;
      continue;
    }
    const std::string_view t = vocab.sorted_bytes(i);
    size_t l = 0;
    const size_t m = std::min(cur.size(), t.size());
    while (l < m && cur[l] == t[l]) ++l;
    if (l < cur.size()) {
      st.Truncate(base + static_cast<int>(l));
      cur.resize(l);
    }
    bool ok = true;
    while (cur.size() < t.size()) {
      const char b = t[cur.size()];
      if (!st.Push(static_cast<uint8_t>(b))) {
        const int32_t end = vocab.SubtreeEnd(i, static_cast<int32_t>(cur.size()) + 1);
        while (ci < n && cands[ci] < end) ++ci;
        ok = false;
        break;
      }
      cur.push_back(b);
    }
    if (!ok) continue;
    SetBit(words, id);
    ++ci;
  }
  st.Truncate(base);
}

// A mask narrower than the vocabulary would be written out of bounds: a caller bug, not input.
void CheckWidth(std::span<uint32_t> words, const TokenVocabulary& vocab) {
  if (words.size() < static_cast<size_t>(vocab.bitmask_words())) {
    std::fprintf(stderr, "GrammarMatcher: bitmask of %zu words for a vocabulary needing %d\n",
                 words.size(), vocab.bitmask_words());
    std::abort();
  }
}

// All of 0..n-1 without materialising them.
struct AllIndices {
  size_t n;
  size_t size() const { return n; }
  int32_t operator[](size_t i) const { return static_cast<int32_t>(i); }
};

}  // namespace

CompiledGrammar::CompiledGrammar(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CompiledGrammar::~CompiledGrammar() = default;

absl::StatusOr<std::shared_ptr<const CompiledGrammar>> CompiledGrammar::Create(
    Grammar grammar, std::shared_ptr<const TokenVocabulary> vocab) {
  if (!vocab) return absl::InvalidArgumentError("no token vocabulary");
  if (absl::Status s = Validate(grammar); !s.ok()) return s;
  auto impl = std::make_unique<Impl>(std::move(grammar), std::move(vocab));
  return std::shared_ptr<const CompiledGrammar>(new CompiledGrammar(std::move(impl)));
}

const Grammar& CompiledGrammar::grammar() const { return impl_->grammar; }
const TokenVocabulary& CompiledGrammar::vocab() const { return *impl_->vocab; }
void CompiledGrammar::PrecomputeMasks() const { impl_->cache.ComputeAll(); }

struct GrammarMatcher::State {
  explicit State(const FlatGrammar* g) : stack(g) {}
  EarleyStack stack;
  struct Token {
    int32_t num_sets;  // the stack's size before the token
    bool eos;
  };
  std::vector<Token> tokens;
  bool ended() const { return !tokens.empty() && tokens.back().eos; }
};

GrammarMatcher::GrammarMatcher(std::shared_ptr<const CompiledGrammar> grammar)
    : grammar_(std::move(grammar)), state_(std::make_unique<State>(&grammar_->impl().flat)) {
  const Item start{grammar_->impl().flat.start_pos, 0};
  state_->stack.Reset({&start, 1});
}

GrammarMatcher::GrammarMatcher(const GrammarMatcher& o)
    : grammar_(o.grammar_), state_(std::make_unique<State>(*o.state_)) {}
GrammarMatcher& GrammarMatcher::operator=(const GrammarMatcher& o) {
  if (this != &o) {
    grammar_ = o.grammar_;
    state_ = std::make_unique<State>(*o.state_);
  }
  return *this;
}
GrammarMatcher::GrammarMatcher(GrammarMatcher&&) noexcept = default;
GrammarMatcher& GrammarMatcher::operator=(GrammarMatcher&&) noexcept = default;
GrammarMatcher::~GrammarMatcher() = default;

bool GrammarMatcher::AcceptToken(int32_t id) {
  if (state_->ended()) return false;
  const TokenVocabulary& vocab = grammar_->vocab();
  const auto eos = vocab.eos_token_ids();
  if (std::find(eos.begin(), eos.end(), id) != eos.end()) {
    if (!CanEnd()) return false;
    state_->tokens.push_back({state_->stack.num_sets(), true});
    return true;
  }
  if (vocab.is_special(id)) return false;  // special and out-of-range ids are never grammar text
  const std::string& bytes = vocab.bytes(id);
  if (bytes.empty()) return false;
  const int32_t before = state_->stack.num_sets();
  if (!AcceptBytes(bytes)) return false;
  state_->tokens.push_back({before, false});
  return true;
}

bool GrammarMatcher::AcceptBytes(std::string_view bytes) {
  if (state_->ended()) return false;
  EarleyStack& st = state_->stack;
  const int before = st.num_sets();
  for (char c : bytes) {
    if (!st.Push(static_cast<uint8_t>(c))) {
      st.Truncate(before);
      return false;
    }
  }
  return true;
}

void GrammarMatcher::RollbackTokens(int num_tokens) {
  auto& tokens = state_->tokens;
  const int n = std::min<int>(num_tokens, static_cast<int>(tokens.size()));
  if (n <= 0) return;
  state_->stack.Truncate(tokens[tokens.size() - n].num_sets);
  tokens.resize(tokens.size() - n);
}

bool GrammarMatcher::CanEnd() const {
  return state_->stack.TopHasCompleted(grammar_->impl().flat.start_rule, 0);
}

bool GrammarMatcher::IsTerminated() const {
  return state_->ended() || (CanEnd() && !state_->stack.TopCanScan());
}

void GrammarMatcher::FillNextTokenBitmask(std::span<uint32_t> words) const {
  const CompiledGrammar::Impl& impl = grammar_->impl();
  const TokenVocabulary& vocab = *impl.vocab;
  CheckWidth(words, vocab);
  std::fill(words.begin(), words.end(), 0);
  const size_t n = vocab.bitmask_words();
  if (!state_->ended()) {
    // Distinct kernel positions of the top set; their accepted sets are unions, their uncertain
    // tokens go to the parser once each.
    thread_local std::vector<int32_t> positions;
    thread_local std::vector<int32_t> cands;
    positions.clear();
    cands.clear();
    for (const Item& it : state_->stack.top()) {
      if (impl.cache.IsKernel(it.pos)) positions.push_back(it.pos);
    }
    std::sort(positions.begin(), positions.end());
    positions.erase(std::unique(positions.begin(), positions.end()), positions.end());
    // Positions between units of one loop share one entry: apply each entry once, with the
    // largest budget and every end count any of its positions has.
    struct Use {
      const TokenMaskCache::Entry* entry;
      int64_t budget;
      internal::UnitCounts ends;
    };
    thread_local std::vector<Use> uses;
    uses.clear();
    TokenMaskCache::BeginMask(state_->stack);
    bool unknown_budget = false;
    for (int32_t p : positions) {
      const TokenMaskCache::Entry* e = &impl.cache.Get(p);
      int64_t budget = 0;
      internal::UnitCounts ends;
      if (!e->sized_ids.empty() || !e->end_ids.empty()) {
        // As many units as the loop has left on the best path through p; the counts after which
        // it can end.
        for (const Item& it : state_->stack.top()) {
          if (it.pos != p) continue;
          if (!e->sized_ids.empty()) {
            const int64_t b = impl.cache.Budget(state_->stack, it);
            if (b < 0) unknown_budget = true;
            budget = std::max(budget, b);
          }
          if (!e->end_ids.empty()) {
            internal::UnitCounts c;
            if (!impl.cache.EndCounts(state_->stack, it, &c)) unknown_budget = true;
            ends |= c;
          }
        }
      }
      auto same =
          std::find_if(uses.begin(), uses.end(), [&](const Use& u) { return u.entry == e; });
      if (same != uses.end()) {
        same->budget = std::max(same->budget, budget);
        same->ends |= ends;
      } else {
        uses.push_back(Use{e, budget, ends});
      }
    }
    for (const Use& u : uses) {
      const TokenMaskCache::Entry& e = *u.entry;
      if (!e.accepted_bits.empty()) {
        for (size_t w = 0; w < n; ++w) words[w] |= e.accepted_bits[w];
      }
      for (int32_t id : e.accepted_ids) SetBit(words, id);
      cands.insert(cands.end(), e.uncertain.begin(), e.uncertain.end());
      e.AddSized(u.budget, words);
      for (size_t i = 0; i < e.end_ids.size(); ++i) {
        if (u.ends.Has(e.end_units[i])) SetBit(words, e.end_ids[i]);
      }
    }
    if (unknown_budget) {  // a loop the budget walk could not read (not built by GrammarBuilder)
      WalkTrie(state_->stack, vocab, AllIndices{vocab.sorted_ids().size()}, words);
      cands.clear();
    }
    if (!cands.empty()) {
      if (uses.size() > 1) {
        std::sort(cands.begin(), cands.end());
        cands.erase(std::unique(cands.begin(), cands.end()), cands.end());
      }
      WalkTrie(state_->stack, vocab, cands, words);
    }
  }
  if (state_->ended() || CanEnd()) {
    for (int32_t e : vocab.eos_token_ids()) SetBit(words, e);
  }
}

void GrammarMatcher::FillNextTokenBitmaskByTrie(std::span<uint32_t> words) const {
  const TokenVocabulary& vocab = grammar_->vocab();
  CheckWidth(words, vocab);
  std::fill(words.begin(), words.end(), 0);
  if (!state_->ended()) {
    WalkTrie(state_->stack, vocab, AllIndices{vocab.sorted_ids().size()}, words);
  }
  if (state_->ended() || CanEnd()) {
    for (int32_t e : vocab.eos_token_ids()) SetBit(words, e);
  }
}

}  // namespace muse::structured
