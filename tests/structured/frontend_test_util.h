// Helpers of the front-end tests (frontend_test.cc: EBNF and choices, regex_test.cc): whole-string
// acceptance through the real GrammarMatcher, PCRE2 as the regex oracle, test-string generation.
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <gtest/gtest.h>
#include <pcre2.h>

#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "src/structured/compile.h"
#include "src/structured/matcher.h"
#include "src/structured/token_vocabulary.h"

namespace muse::structured::frontend_test {

inline std::string Escaped(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
    }
  }
  return out;
}

inline std::shared_ptr<const TokenVocabulary> ByteVocab() {
  static const std::shared_ptr<const TokenVocabulary> vocab = [] {
    std::vector<std::string> tokens;
    for (int b = 0; b < 256; ++b) tokens.emplace_back(1, static_cast<char>(b));
    tokens.emplace_back("<eos>");
    return TokenVocabulary::FromBytes(std::move(tokens), {256}, {256});
  }();
  return vocab;
}

// Whole-string acceptance through the matcher.
class Acceptor {
 public:
  explicit Acceptor(const Grammar& g) {
    auto compiled = CompiledGrammar::Create(g, ByteVocab());
    EXPECT_TRUE(compiled.ok()) << compiled.status();
    if (compiled.ok()) initial_ = std::make_unique<GrammarMatcher>(*compiled);
  }
  bool Accepts(std::string_view s) const {
    if (!initial_) return false;
    GrammarMatcher m(*initial_);
    return m.AcceptBytes(s) && m.CanEnd();
  }

 private:
  std::unique_ptr<GrammarMatcher> initial_;
};

inline Grammar MustCompileRegex(std::string_view re) {
  auto g = CompileRegex(re);
  EXPECT_TRUE(g.ok()) << "regex " << Escaped(re) << ": " << g.status();
  return g.ok() ? *std::move(g) : Grammar{};
}

inline Grammar MustCompileEbnf(std::string_view text) {
  auto g = CompileEbnf(text);
  EXPECT_TRUE(g.ok()) << g.status() << "\n" << text;
  return g.ok() ? *std::move(g) : Grammar{};
}

// ECMAScript's \uHHHH and \u{H..} written as PCRE2's \x{H..} (PCRE2's ALT_BSUX modes would
// take \u but then refuse \x{H..}).
inline std::string ToPcreSyntax(std::string_view re) {
  std::string out;
  for (size_t i = 0; i < re.size(); ++i) {
    if (re[i] != '\\' || i + 1 >= re.size()) {
      out += re[i];
      continue;
    }
    if (re[i + 1] != 'u') {
      out += re.substr(i, 2);
      ++i;
      continue;
    }
    if (i + 2 < re.size() && re[i + 2] == '{') {
      out += "\\x";
      i += 1;  // the loop copies "{H..}"
    } else {
      out += "\\x{";
      out += re.substr(i + 2, 4);
      out += "}";
      i += 5;
    }
  }
  return out;
}

// PCRE2 as the oracle: UTF mode without UCP (ASCII \d \w \s), anchored at both ends, \n as the
// only newline. An invalid-UTF-8 subject is a non-match.
class Pcre {
 public:
  explicit Pcre(std::string_view re) {
    pcre2_compile_context* cctx = pcre2_compile_context_create(nullptr);
    pcre2_set_newline(cctx, PCRE2_NEWLINE_LF);
    int err = 0;
    PCRE2_SIZE off = 0;
    const std::string pcre_re = ToPcreSyntax(re);
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pcre_re.data()), pcre_re.size(),
                          PCRE2_UTF | PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_DOLLAR_ENDONLY,
                          &err, &off, cctx);
    pcre2_compile_context_free(cctx);
    if (code_ == nullptr) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      error_ = reinterpret_cast<const char*>(msg);
    } else {
      data_ = pcre2_match_data_create_from_pattern(code_, nullptr);
    }
  }
  ~Pcre() {
    pcre2_match_data_free(data_);
    pcre2_code_free(code_);
  }
  bool ok() const { return code_ != nullptr; }
  const std::string& error() const { return error_; }
  bool Matches(std::string_view s) const {
    const int rc =
        pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0, 0, data_, nullptr);
    return rc >= 0;
  }

 private:
  pcre2_code* code_ = nullptr;
  pcre2_match_data* data_ = nullptr;
  std::string error_;
};

inline void AppendCp(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    *out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    *out += static_cast<char>(0xC0 | (cp >> 6));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *out += static_cast<char>(0xE0 | (cp >> 12));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    *out += static_cast<char>(0xF0 | (cp >> 18));
    *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Characters (as UTF-8 strings) from which test strings are drawn: ASCII classes' edges,
// metacharacters, whitespace, 2-, 3- and 4-byte characters.
inline const std::vector<std::string>& CharPool() {
  static const std::vector<std::string> pool = {
      "a", "b",  "c",  "x",  "z",  "A", "Z",  "0", "5",    "9",
      "_", " ",  "\t", "\n", "\r", "-", ".",  "@", "{",    "}",
      "]", "\\", "/",  "é",  "ß",  "€", "中", "😀", "\x7f", std::string(1, '\0')};
  return pool;
}

// Random strings plus single-edit mutations of `seeds` (insert, delete, replace, duplicate a
// byte range, cut a multi-byte character in half).
inline std::vector<std::string> TestStrings(const std::vector<std::string>& seeds,
                                            const std::vector<std::string>& alphabet,
                                            int num_random, std::mt19937* rng) {
  std::vector<std::string> out = seeds;
  out.emplace_back("");
  auto pick = [&](const std::vector<std::string>& v) {
    return v[std::uniform_int_distribution<size_t>(0, v.size() - 1)(*rng)];
  };
  for (int i = 0; i < num_random; ++i) {
    std::string s;
    const int len = std::uniform_int_distribution<int>(1, 8)(*rng);
    for (int k = 0; k < len; ++k) s += pick(alphabet);
    out.push_back(std::move(s));
  }
  for (const std::string& seed : seeds) {
    for (int rep = 0; rep < 4; ++rep) {
      std::string s = seed;
      const size_t at = s.empty() ? 0 : std::uniform_int_distribution<size_t>(0, s.size())(*rng);
      switch (std::uniform_int_distribution<int>(0, 4)(*rng)) {
        case 0:
          s.insert(at, pick(alphabet));
          break;
        case 1:
          if (at < s.size()) s.erase(at, 1);
          break;
        case 2:
          if (at < s.size()) s.replace(at, 1, pick(alphabet));
          break;
        case 3:
          s += s.substr(at);
          break;
        default:
          s += "\xE2\x82";  // the first two bytes of "€"
          break;
      }
      out.push_back(std::move(s));
    }
  }
  return out;
}

// Compiles `re` with both and compares acceptance on `strings`; returns how many PCRE2 matched.
inline int ExpectSameAsPcre(std::string_view re, const std::vector<std::string>& strings) {
  Pcre pcre(re);
  EXPECT_TRUE(pcre.ok()) << "PCRE2 rejects " << Escaped(re) << ": " << pcre.error();
  if (!pcre.ok()) return 0;
  auto g = CompileRegex(re);
  EXPECT_TRUE(g.ok()) << "regex " << Escaped(re) << ": " << g.status();
  if (!g.ok()) return 0;
  Acceptor ours(*g);
  int matched = 0;
  int mismatches = 0;
  for (const std::string& s : strings) {
    const bool want = pcre.Matches(s);
    matched += want;
    if (ours.Accepts(s) != want && ++mismatches <= 5) {
      ADD_FAILURE() << "regex " << Escaped(re) << " on \"" << Escaped(s) << "\": PCRE2 says "
                    << want;
    }
  }
  return matched;
}

}  // namespace muse::structured::frontend_test
