// Byte-level grammar matching and token masks.
//
// CompiledGrammar = a Grammar bound to a TokenVocabulary, plus whatever per-grammar tables the
// matcher precomputes (immutable, shared by every request using the same constraint and
// thread-safe). GrammarMatcher = one sequence's parse state: an Earley parser over bytes whose
// per-byte sets are kept on a stack, so a token is accepted by pushing its bytes and rolled back
// by popping them (mask computation walks the sorted vocabulary that way; the engine rolls back
// for nothing else today, but speculative decoding would). Each sample of n > 1 copies its
// leader's matcher; preemption keeps it (it depends on tokens, not on KV).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "src/structured/grammar.h"
#include "src/structured/token_vocabulary.h"

namespace muse::structured {

class CompiledGrammar {
 public:
  static absl::StatusOr<std::shared_ptr<const CompiledGrammar>> Create(
      Grammar grammar, std::shared_ptr<const TokenVocabulary> vocab);
  ~CompiledGrammar();
  const Grammar& grammar() const;
  const TokenVocabulary& vocab() const;
  // Computes every per-position token class now (see token_mask_cache.h) instead of on the first
  // mask that needs it; thread-safe. Costs one vocabulary walk per kernel position.
  void PrecomputeMasks() const;

  struct Impl;  // matcher.cc
  const Impl& impl() const { return *impl_; }

 private:
  explicit CompiledGrammar(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class GrammarMatcher {
 public:
  explicit GrammarMatcher(std::shared_ptr<const CompiledGrammar> grammar);
  GrammarMatcher(const GrammarMatcher&);
  GrammarMatcher& operator=(const GrammarMatcher&);
  GrammarMatcher(GrammarMatcher&&) noexcept;
  GrammarMatcher& operator=(GrammarMatcher&&) noexcept;
  ~GrammarMatcher();

  // Advances by a sampled token. An EOS id is accepted only where the grammar may end and
  // terminates the matcher. false (state unchanged): the token is not allowed here.
  bool AcceptToken(int32_t id);
  // Advances by raw bytes (all or nothing; false leaves the state unchanged).
  bool AcceptBytes(std::string_view bytes);
  // Undoes the last `num_tokens` accepted tokens (EOS included). Bytes given to AcceptBytes belong
  // to no token: rolling back the token before them drops them too.
  void RollbackTokens(int num_tokens);

  // The grammar accepts the bytes so far (EOS would be allowed).
  bool CanEnd() const;
  // EOS accepted, or no byte can follow and the grammar can end: nothing but EOS is allowed.
  bool IsTerminated() const;

  // Writes the allowed next tokens as bits (`words` has at least vocab().bitmask_words() entries,
  // fewer aborts; token i is bit i % 32 of word i / 32). EOS ids are set iff CanEnd(). After
  // termination only EOS ids.
  // Uses the compiled grammar's per-position token classes and runs the parser only on the
  // tokens they leave undecided. Not thread-safe on one matcher (it parses ahead and rolls back).
  void FillNextTokenBitmask(std::span<uint32_t> words) const;
  // The same mask by walking the whole vocabulary trie with the parser (no cache): the reference
  // for tests and benchmarks.
  void FillNextTokenBitmaskByTrie(std::span<uint32_t> words) const;

  const CompiledGrammar& compiled() const { return *grammar_; }

  struct State;  // matcher.cc

 private:
  std::shared_ptr<const CompiledGrammar> grammar_;
  std::unique_ptr<State> state_;
};

}  // namespace muse::structured
