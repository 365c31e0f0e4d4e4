#include "src/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "absl/strings/str_cat.h"

namespace muse::tokenizer {

struct Regex::Code {
  pcre2_code* re = nullptr;
  ~Code() {
    if (re) pcre2_code_free(re);
  }
};

namespace {

// Per-thread match scratch: a JIT stack big enough for long whitespace runs and reusable match
// data.
struct ThreadScratch {
  pcre2_match_context* mctx = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;
  pcre2_match_data* md = nullptr;
  ThreadScratch() {
    mctx = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(PCRE2_SIZE{32} * 1024, PCRE2_SIZE{4} * 1024 * 1024, nullptr);
    if (mctx && jit_stack) pcre2_jit_stack_assign(mctx, nullptr, jit_stack);
    md = pcre2_match_data_create(4, nullptr);
  }
  ~ThreadScratch() {
    if (md) pcre2_match_data_free(md);
    if (jit_stack) pcre2_jit_stack_free(jit_stack);
    if (mctx) pcre2_match_context_free(mctx);
  }
};

ThreadScratch& Scratch() {
  thread_local ThreadScratch scratch;
  return scratch;
}

}  // namespace

// Oniguruma's \s (Unicode mode) is the White_Space property, which includes U+0085 NEL;
// PCRE2 10.42's UCP \s is "Z categories + HT/LF/VT/FF/CR" and misses NEL. Add it explicitly.
std::string TranslateOnigPattern(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 16);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[i + 1];
      if (n == 's') {
        out += in_class ? "\\s\\x{85}" : "[\\s\\x{85}]";
      } else if (n == 'S' && !in_class) {
        out += "[^\\s\\x{85}]";
      } else {
        out += c;
        out += n;
      }
      ++i;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Regex>> Regex::Compile(std::string_view pattern) {
  const std::string translated = TranslateOnigPattern(pattern);
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                                 PCRE2_UTF | PCRE2_UCP, &err, &err_off, nullptr);
  if (!re) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof(buf));
    return absl::InvalidArgumentError(absl::StrCat("cannot compile regex '", std::string(pattern),
                                                   "' at offset ", err_off, ": ",
                                                   reinterpret_cast<char*>(buf)));
  }
  std::unique_ptr<Regex> r(new Regex());
  r->code_ = std::make_unique<Code>();
  r->code_->re = re;
  r->jit_ = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
  return r;
}

Regex::~Regex() = default;

absl::Status Regex::FindAll(std::string_view text,
                            std::vector<std::pair<size_t, size_t>>& out) const {
  ThreadScratch& s = Scratch();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos <= text.size()) {
    // Input was validated once up front, so skip PCRE2's per-call UTF check.
    const int rc =
        jit_ ? pcre2_jit_match(code_->re, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, s.md,
                               s.mctx)
             : pcre2_match(code_->re, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, s.md, s.mctx);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(rc, buf, sizeof(buf));
      return absl::InternalError(
          absl::StrCat("regex match failed: ", reinterpret_cast<char*>(buf)));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(s.md);
    const size_t b = ov[0], e = ov[1];
    if (e == b) {
      // Empty match: reported (it still splits the text), then step one character forward.
      out.emplace_back(b, e);
      if (b >= text.size()) break;
      pos = b + 1;
      while (pos < text.size() && (static_cast<uint8_t>(text[pos]) & 0xC0) == 0x80) ++pos;
      continue;
    }
    out.emplace_back(b, e);
    pos = e;
  }
  return absl::OkStatus();
}

}  // namespace muse::tokenizer
