// libFuzzer target: the structured-output front ends and the matcher. The first input byte picks
// the front end (JSON schema strict / JSON schema with whitespace / regex / EBNF / choices, one per
// line); the rest is its text. A constraint that compiles is bound to a small vocabulary (every
// single byte, a few multi-byte pieces that split UTF-8 characters and JSON escapes, and EOS), and
// a path is walked through its language, steered by the remaining input bytes.
//
// Invariants: front ends fail only with InvalidArgument; every token the mask allows is accepted
// and every one it refuses is refused (checked for all tokens at each step); EOS is allowed iff
// the grammar may end; since a grammar's every rule can finish (GrammarBuilder::Finish), a mask
// never comes up empty; rollback restores the previous mask; nothing crashes, leaks or hangs.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "src/structured/compile.h"
#include "src/structured/matcher.h"

namespace {

using muse::structured::CompiledGrammar;
using muse::structured::GrammarMatcher;
using muse::structured::TokenVocabulary;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

const std::shared_ptr<const TokenVocabulary>& Vocab() {
  static const auto* vocab = [] {
    std::vector<std::string> tokens;
    for (int b = 0; b < 256; ++b) tokens.emplace_back(1, static_cast<char>(b));
    for (const char* piece :
         {"{\"",    "\":",      "\",\"", "\"}", "true", "null", "\\u00", "\\n", "é",  "\xC3",
          "\xA9\"", "\xE2\x82", "\xAC",  "12",  "-0.",  "e+",   "},{",   "[]",  "ab", "abc"}) {
      tokens.emplace_back(piece);
    }
    tokens.emplace_back("");  // EOS: a special id
    const int32_t eos = static_cast<int32_t>(tokens.size()) - 1;
    return new std::shared_ptr<const TokenVocabulary>(
        TokenVocabulary::FromBytes(std::move(tokens), {eos}, {eos}));
  }();
  return *vocab;
}

bool Allowed(const std::vector<uint32_t>& words, int id) {
  return (words[id / 32] >> (id % 32)) & 1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int kind = data[0] % 5;
  // Text up to the first 0xFF byte; what follows steers the walk.
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const size_t split = rest.find('\xFF');
  const std::string_view text = rest.substr(0, split);
  const std::string_view steer = split == std::string_view::npos ? "" : rest.substr(split + 1);

  absl::StatusOr<muse::structured::Grammar> grammar;
  switch (kind) {
    case 0:
    case 1: {
      muse::structured::JsonSchemaOptions options;
      options.compact = kind == 0;
      options.strict = kind == 0;
      grammar = muse::structured::CompileJsonSchema(text, options);
      break;
    }
    case 2:
      grammar = muse::structured::CompileRegex(text);
      break;
    case 3:
      grammar = muse::structured::CompileEbnf(text);
      break;
    default: {
      std::vector<std::string> choices;
      size_t start = 0;
      while (start <= text.size() && choices.size() < 64) {
        const size_t nl = text.find('\n', start);
        choices.emplace_back(text.substr(start, nl == std::string_view::npos ? nl : nl - start));
        if (nl == std::string_view::npos) break;
        start = nl + 1;
      }
      grammar = muse::structured::ChoiceGrammar(choices);
      break;
    }
  }
  if (!grammar.ok()) {
    Check(grammar.status().code() == absl::StatusCode::kInvalidArgument,
          "a front end failed with a code other than InvalidArgument");
    return 0;
  }
  auto compiled = CompiledGrammar::Create(*std::move(grammar), Vocab());
  if (!compiled.ok()) {
    Check(compiled.status().code() == absl::StatusCode::kInvalidArgument,
          "Create failed with a code other than InvalidArgument");
    return 0;
  }
  const TokenVocabulary& vocab = *Vocab();
  const int n = vocab.vocab_size();
  const int32_t eos = vocab.eos_token_ids()[0];
  GrammarMatcher matcher(*compiled);
  std::vector<uint32_t> words(vocab.bitmask_words());
  std::vector<uint32_t> before(words.size());
  for (size_t step = 0; step < 24 && !matcher.IsTerminated(); ++step) {
    matcher.FillNextTokenBitmask(words);
    Check(Allowed(words, eos) == matcher.CanEnd(), "EOS allowed iff the grammar may end");
    std::vector<int32_t> allowed;
    for (int id = 0; id < n; ++id) {
      GrammarMatcher probe = matcher;
      const bool ok = probe.AcceptToken(id);
      Check(ok == Allowed(words, id), "the mask disagrees with AcceptToken");
      if (ok && id != eos) allowed.push_back(id);
    }
    Check(!allowed.empty() || matcher.CanEnd(), "a dead end: no token and the grammar cannot end");
    if (allowed.empty()) break;
    const uint8_t pick = step < steer.size() ? static_cast<uint8_t>(steer[step]) : 0;
    const int32_t id = allowed[pick % allowed.size()];
    before = words;
    Check(matcher.AcceptToken(id), "an allowed token was refused");
    if (pick & 0x80) {  // roll back and check the mask comes back
      matcher.RollbackTokens(1);
      matcher.FillNextTokenBitmask(words);
      Check(words == before, "rollback did not restore the mask");
      Check(matcher.AcceptToken(id), "an allowed token was refused after rollback");
    }
  }
  return 0;
}
