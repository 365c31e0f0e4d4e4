// Compiled grammars by constraint, for ONE TokenVocabulary (the served model's). Compiling is a
// pure function of (kind, text, options), so the cache keys on exactly that: JSON schemas by
// their compact serialisation (whitespace and escapes do not split entries; key order is kept,
// it decides the output's property order), choices by their JSON array, regex / EBNF by their
// text. Thread-safe: requests compiling the same key at once compile it once, the others wait for
// that result. Least recently used entries are dropped past `capacity`.
//
// Errors: InvalidArgument (the constraint itself is bad; deterministic) is cached like a grammar,
// so a client repeating a bad schema costs one compile. Any other error (Internal, an exception
// from an allocation) reaches the requests waiting on that compile and is then forgotten.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "src/structured/compile.h"
#include "src/structured/matcher.h"
#include "src/structured/token_vocabulary.h"

namespace muse::structured {

enum class ConstraintKind : uint8_t { kJsonObject, kJsonSchema, kRegex, kEbnf, kChoice };
// "json_object", "json_schema", "regex", "grammar", "choice" (metric labels, logs).
const char* ConstraintKindName(ConstraintKind kind);

// One constraint as a client sent it.
struct Constraint {
  ConstraintKind kind = ConstraintKind::kJsonObject;
  std::string text;                  // the schema's JSON, the regex or the EBNF grammar
  std::vector<std::string> choices;  // kChoice
  JsonSchemaOptions json;            // kJsonObject, kJsonSchema
};

// The front end for `c.kind`, then CompiledGrammar::Create and PrecomputeMasks (so no mask on the
// decode path computes token classes). No cache.
absl::StatusOr<std::shared_ptr<const CompiledGrammar>> CompileConstraint(
    const Constraint& c, std::shared_ptr<const TokenVocabulary> vocab);

struct GrammarCacheStats {
  uint64_t hits = 0;    // answered from an entry (a finished or an in-progress compile)
  uint64_t misses = 0;  // = compiles started
  uint64_t compile_errors = 0;
  uint64_t evictions = 0;
  double compile_seconds = 0;  // summed over every compile, failed ones included
  int64_t entries = 0;
  // The vocabulary's shared token classes (token_mask_cache.h SharedTokenClasses): sub-parses
  // such as a JSON string, classified once per process and reused by every grammar.
  int64_t shared_token_classes = 0;
};

class GrammarCache {
 public:
  // Called after every compile (on the compiling thread, no lock held): for histograms.
  using CompileObserver = std::function<void(ConstraintKind kind, double seconds, bool ok)>;

  GrammarCache(std::shared_ptr<const TokenVocabulary> vocab, size_t capacity,
               CompileObserver on_compile = nullptr);
  GrammarCache(const GrammarCache&) = delete;
  GrammarCache& operator=(const GrammarCache&) = delete;

  // The compiled grammar of `c`; compiles on the calling thread on a miss.
  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> Get(const Constraint& c);
  // Get's answer when an entry for `c` holds a FINISHED compile (a grammar or a cached
  // InvalidArgument; counted as a hit), else nullopt without touching the cache (no miss counted,
  // no compile started): lets a caller compile misses off its own thread. Never waits.
  std::optional<absl::StatusOr<std::shared_ptr<const CompiledGrammar>>> Find(const Constraint& c);

  GrammarCacheStats stats() const;
  const std::shared_ptr<const TokenVocabulary>& vocab() const { return vocab_; }
  // The key Get uses for `c` (exposed for tests).
  static std::string Key(const Constraint& c);

 private:
  struct Slot;  // grammar_cache.cc: one compile's result, waited on by concurrent requests
  struct Entry {
    std::string key;
    std::shared_ptr<Slot> slot;
  };

  // Compiles `c` into `slot` (no lock held) and keeps or drops the entry by the outcome.
  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> Compile(const Constraint& c,
                                                                 const std::shared_ptr<Slot>& slot);

  const std::shared_ptr<const TokenVocabulary> vocab_;
  const size_t capacity_;
  const CompileObserver on_compile_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // most recently used first
  absl::flat_hash_map<std::string_view, std::list<Entry>::iterator> index_;  // views lru_ keys
  GrammarCacheStats stats_;
};

}  // namespace muse::structured
