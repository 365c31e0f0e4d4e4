// Structured output in the core (both faces): the served model's TokenVocabulary and grammar
// cache, built once at load, and v1::ResponseFormat -> the compiled grammar a request samples
// under. Compiling runs through the cache on a small admission pool (gRPC: CompilePool; HTTP: the
// face's admit pool), never on a gRPC / io thread that serves other streams, nor on the engine
// thread. Errors start with the proto field path
// ("response_format.json_schema: schema /properties/a: ...").
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "muse/v1/inference.pb.h"
#include "src/common/status.h"
#include "src/structured/grammar_cache.h"

namespace muse::tokenizer {
class Tokenizer;
}  // namespace muse::tokenizer

namespace muse::server {

struct ServedModel;

// What ServedModel holds: the cache, or why structured output is unavailable for the model.
struct StructuredOutput {
  std::unique_ptr<structured::GrammarCache> cache;  // null when unavailable
  std::string unavailable;                          // the reason, when cache is null
};

// The vocabulary as bytes (TokenVocabulary::FromTokenizer over the model's vocab_size and EOS
// ids) and an empty cache of `cache_capacity` grammars. A tokenizer the vocabulary cannot be
// built from, or a model without EOS ids (a constrained output could never end), leaves
// structured output unavailable -- the model still serves everything else.
StructuredOutput LoadStructuredOutput(const tokenizer::Tokenizer& tok, int64_t vocab_size,
                                      const std::vector<int64_t>& eos_token_ids,
                                      size_t cache_capacity,
                                      structured::GrammarCache::CompileObserver on_compile);

// `rf` -> the constraint it names (nullopt: no format set). Checks the fields' shape only.
absl::StatusOr<std::optional<structured::Constraint>> ConstraintOf(const v1::ResponseFormat& rf);

// `rf` -> the compiled grammar (null when no format is set), through the model's cache; compiles
// on the calling thread on a miss.
absl::StatusOr<std::shared_ptr<const structured::CompiledGrammar>> CompileResponseFormat(
    const v1::ResponseFormat& rf, const ServedModel& served);

// `rf` without compiling: `grammar` when nothing is left to compile (null: no format set; else the
// cache held the finished compile), otherwise the constraint `to_compile` (a miss, or a compile
// another request has in progress). Errors as CompileResponseFormat's, cached ones included.
struct ResponseFormatLookup {
  std::shared_ptr<const structured::CompiledGrammar> grammar;
  std::optional<structured::Constraint> to_compile;
};
absl::StatusOr<ResponseFormatLookup> LookupResponseFormat(const v1::ResponseFormat& rf,
                                                          const ServedModel& served);
// A `to_compile` of LookupResponseFormat -> the compiled grammar, through the model's cache, on the
// calling thread. Errors as CompileResponseFormat's.
absl::StatusOr<std::shared_ptr<const structured::CompiledGrammar>> CompileResponseFormat(
    const structured::Constraint& c, const ServedModel& served);

}  // namespace muse::server
