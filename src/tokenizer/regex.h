// PCRE2 regex (UTF + UCP, JIT when available) with Oniguruma-compatible \s, as HF tokenizers uses
// onig.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace muse::tokenizer {

class Regex {
 public:
  // Compiles `pattern` (Oniguruma syntax as written in tokenizer.json).
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(std::string_view pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the [begin, end) byte ranges of all non-overlapping matches in valid UTF-8 `text`.
  // Thread-safe: per-thread match state.
  absl::Status FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;

 private:
  Regex() = default;
  struct Code;
  std::unique_ptr<Code> code_;
  bool jit_ = false;
};

// Rewrites Oniguruma-only details of `pattern` into PCRE2 syntax (exposed for tests).
std::string TranslateOnigPattern(std::string_view pattern);

}  // namespace muse::tokenizer
