// libFuzzer target: tokenizer.json loading (Tokenizer::FromJson: model, added tokens, normalizer,
// pre-tokenizer, post-processor and decoder sections). A tokenizer that loads is then used: a few
// fixed texts are encoded and decoded, and every id is looked up.
//
// Invariants: load errors are InvalidArgument; on a loaded tokenizer, Encode of valid UTF-8
// succeeds with ids below vocab_size(), and Decode of those ids succeeds.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "src/tokenizer/tokenizer.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

constexpr std::string_view kTexts[] = {"", "Hello, world!", "  spaces\tand\nnewlines  ",
                                       "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80",
                                       "<s>[INST] <|begin_of_text|> 1234567 don't"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto tok = muse::tokenizer::Tokenizer::FromJson(
      std::string_view(reinterpret_cast<const char*>(data), size));
  if (!tok.ok()) {
    Check(tok.status().code() == absl::StatusCode::kInvalidArgument, "error is InvalidArgument");
    return 0;
  }
  const auto& t = **tok;
  const size_t vocab = t.vocab_size();
  for (std::string_view text : kTexts) {
    for (bool special : {false, true}) {
      auto ids = t.Encode(text, special);
      Check(ids.ok(), "Encode of valid UTF-8 succeeds");
      for (int32_t id : *ids) {
        Check(id >= 0 && static_cast<size_t>(id) < vocab, "ids below vocab_size");
        Check(t.IdToToken(id).has_value(), "every produced id has a token");
      }
      Check(t.Decode(*ids, special).ok(), "Decode of encoded ids succeeds");
    }
  }
  for (int32_t id : {-1, 0, 1, 2, static_cast<int32_t>(vocab), 1 << 30}) {
    auto piece = t.IdToToken(id);
    if (piece.has_value()) (void)t.TokenToId(*piece);
    (void)t.IsSpecial(id);
  }
  return 0;
}
