// Small grammars over a byte vocabulary for the engine's structured-output tests (issue #17):
// the vocabulary of the engine test models (ids 0 <unk>, 1 <s>, 2 </s> = EOS special), the
// grammars compiled for it, and the check that a sample is in the grammar's language.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "src/engine/request.h"
#include "src/structured/grammar.h"
#include "src/structured/matcher.h"
#include "src/structured/token_vocabulary.h"

namespace muse::testing {

// 3.. are the single bytes of the alphabet, then multi-byte tokens (a few JSON-ish ones, then
// pseudo-random strings over the alphabet). No token holds 'Z', so a grammar needing it
// dead-ends.
inline std::shared_ptr<const structured::TokenVocabulary> TestVocabulary(int size, int32_t eos) {
  const std::string alphabet = "abcdefghijklmnopqrstuvwxyz0123456789{}\":, .-";
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::set<std::string> seen(tokens.begin(), tokens.end());
  for (char c : alphabet) {
    tokens.emplace_back(1, c);
    seen.insert(tokens.back());
  }
  for (const char* t : {"true", "false", "null", "{\"", "\":", "\",\"", "\"}", "ab", "bc", "abc"}) {
    if (seen.insert(t).second) tokens.emplace_back(t);
  }
  std::mt19937 rng(5);
  while (static_cast<int>(tokens.size()) < size) {
    std::string t;
    const int len = 2 + static_cast<int>(rng() % 3);
    for (int i = 0; i < len; ++i) t += alphabet[rng() % alphabet.size()];
    if (seen.insert(t).second) tokens.push_back(t);
  }
  tokens.resize(size);
  return structured::TokenVocabulary::FromBytes(std::move(tokens), {eos}, {0, 1, eos});
}

inline std::shared_ptr<const structured::CompiledGrammar> CompileForTest(
    absl::StatusOr<structured::Grammar> g, int vocab_size, int32_t eos) {
  EXPECT_TRUE(g.ok()) << g.status();
  if (!g.ok()) return nullptr;
  auto c = structured::CompiledGrammar::Create(*std::move(g), TestVocabulary(vocab_size, eos));
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : nullptr;
}

// {"key":value,...} with at most 3 pairs: keys [a-z]{1,8}, values [0-9]{1,4}, true, false, null
// or a string [a-z ]{0,10}. A finite language (at most 75 bytes): every sample that may run that
// many tokens ends with "stop".
inline structured::Grammar ObjectGrammar() {
  using structured::Alternative;
  using structured::ByteSet;
  using structured::Symbol;
  structured::GrammarBuilder b;
  const Symbol quote = b.Byte('"');
  const Symbol key = b.Repeat(b.Bytes(ByteSet::Range('a', 'z')), 1, 8);
  ByteSet text = ByteSet::Range('a', 'z');
  text.Add(' ');
  const Symbol str = b.Choice({Alternative{quote, b.Repeat(b.Bytes(text), 0, 10), quote}}, "str");
  const Symbol value = b.Choice({Alternative{b.Repeat(b.Bytes(ByteSet::Range('0', '9')), 1, 4)},
                                 Alternative{b.Literal("true")}, Alternative{b.Literal("false")},
                                 Alternative{b.Literal("null")}, Alternative{str}},
                                "value");
  const Symbol pair = b.Choice({Alternative{quote, key, quote, b.Byte(':'), value}}, "pair");
  const int32_t root = b.AddRule("root");
  Alternative alt;
  b.AppendLiteral("{", &alt);
  alt.push_back(b.SeparatedList(pair, b.Byte(','), 0, 3));
  b.AppendLiteral("}", &alt);
  b.AddAlternative(root, alt);
  auto g = std::move(b).Finish(root);
  EXPECT_TRUE(g.ok()) << g.status();
  return g.ok() ? *std::move(g) : structured::Grammar{};
}

// Exactly `text`.
inline structured::Grammar LiteralGrammar(const std::string& text) {
  structured::GrammarBuilder b;
  const int32_t root = b.AddRule("root");
  structured::Alternative alt;
  b.AppendLiteral(text, &alt);
  b.AddAlternative(root, alt);
  auto g = std::move(b).Finish(root);
  EXPECT_TRUE(g.ok()) << g.status();
  return g.ok() ? *std::move(g) : structured::Grammar{};
}

// [0-9]+: may end (EOS) after every digit, never has to.
inline structured::Grammar DigitsGrammar() {
  structured::GrammarBuilder b;
  const int32_t root = b.AddRule("root");
  b.AddAlternative(root, {b.Plus(b.Bytes(structured::ByteSet::Range('0', '9')))});
  auto g = std::move(b).Finish(root);
  EXPECT_TRUE(g.ok()) << g.status();
  return g.ok() ? *std::move(g) : structured::Grammar{};
}

// The bytes `tokens` append (EOS and other special ids append nothing).
inline std::string GrammarBytes(const structured::CompiledGrammar& g,
                                const std::vector<int32_t>& tokens) {
  std::string s;
  for (int32_t t : tokens) s += g.vocab().bytes(t);
  return s;
}

// Replays a sample through a fresh matcher: every token accepted; "stop" only where the grammar
// is complete (EOS accepted, or nothing can follow); "length" only at max_tokens.
inline void ExpectInLanguage(const std::shared_ptr<const structured::CompiledGrammar>& g,
                             const std::vector<int32_t>& tokens,
                             std::optional<engine::FinishReason> finish, int max_tokens,
                             const std::string& what) {
  structured::GrammarMatcher m(g);
  for (size_t i = 0; i < tokens.size(); ++i) {
    ASSERT_FALSE(m.IsTerminated()) << what << ": a token after the grammar was complete";
    ASSERT_TRUE(m.AcceptToken(tokens[i]))
        << what << ": token " << i << " (" << tokens[i] << " \"" << g->vocab().bytes(tokens[i])
        << "\") rejected after \""
        << GrammarBytes(*g, {tokens.begin(), tokens.begin() + static_cast<ptrdiff_t>(i)}) << "\"";
  }
  ASSERT_TRUE(finish.has_value()) << what;
  if (*finish == engine::FinishReason::kStop) {
    EXPECT_TRUE(m.IsTerminated()) << what << ": \"" << GrammarBytes(*g, tokens) << "\"";
  } else {
    EXPECT_EQ(*finish, engine::FinishReason::kLength) << what;
    EXPECT_EQ(static_cast<int>(tokens.size()), max_tokens) << what;
  }
}

}  // namespace muse::testing
