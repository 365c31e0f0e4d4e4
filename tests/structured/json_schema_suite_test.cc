// Conformance with the JSON Schema Test Suite (Debian json-schema-test-suite, installed by
// scripts/setup.sh): for every test case whose schema compiles, the grammar accepts a
// serialisation of the instance iff the suite says the instance is valid. Cases whose schema is
// refused as unsupported are skipped and counted by keyword; the counts are printed on stdout.
//
// "A serialisation" is compact JSON with the object keys in SOME order and integral numbers
// spelled with or without ".0" (a large one also as plain digits): a grammar fixes one key order
// (the schema's) and one spelling of an enum's numbers, while JSON Schema validates values, not
// texts. The search feeds the matcher key by key and prunes at the first rejected byte, so it does
// not enumerate all orders.
//
// The one remaining difference is expected and checked case by case: oneOf is compiled as anyOf,
// so an instance that matches two or more branches is valid in the grammar but not in JSON Schema;
// such a case is counted as "oneOf overlap" only after each branch alone is compiled and at least
// two of them are shown to accept the instance. Any other disagreement fails the test.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "src/structured/compile.h"
#include "src/structured/matcher.h"
#include "src/structured/token_vocabulary.h"

namespace muse::structured {
namespace {

using Json = nlohmann::ordered_json;
namespace fs = std::filesystem;

std::shared_ptr<const TokenVocabulary> ByteVocab() {
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.emplace_back(1, static_cast<char>(b));
  tokens.emplace_back("</s>");
  return TokenVocabulary::FromBytes(std::move(tokens), {256});
}

// The spellings of a number a serialiser could write for the same value.
std::vector<std::string> NumberSpellings(const Json& v) {
  std::vector<std::string> out{v.dump()};
  if (v.is_number_integer()) {
    out.push_back(absl::StrCat(v.dump(), ".0"));
  } else {
    // An integral double also as its exact decimal digits (1e52 -> "1000...0").
    const double d = v.get<double>();
    if (std::isfinite(d) && std::floor(d) == d) {
      char digits[400];
      std::snprintf(digits, sizeof(digits), "%.0f", d);
      out.push_back(std::string(digits) == "-0" ? "0" : digits);
    }
  }
  return out;
}

using Continue = std::function<bool(const GrammarMatcher&)>;

// Feeds some serialisation of `v` to a copy of `m` and calls `next` on the result; true when one
// choice of key order / number spelling makes `next` true.
bool Feed(const GrammarMatcher& m, const Json& v, const Continue& next);

bool FeedBytes(const GrammarMatcher& m, const std::string& bytes, const Continue& next) {
  GrammarMatcher copy(m);
  return copy.AcceptBytes(bytes) && next(copy);
}

bool FeedArray(const GrammarMatcher& m, const Json& v, size_t i, const Continue& next) {
  if (i == v.size()) return FeedBytes(m, "]", next);
  return FeedBytes(m, i == 0 ? "" : ",", [&](const GrammarMatcher& a) {
    return Feed(a, v[i], [&](const GrammarMatcher& b) { return FeedArray(b, v, i + 1, next); });
  });
}

bool FeedObject(const GrammarMatcher& m, const Json& v, std::vector<bool>& used, size_t done,
                const Continue& next) {
  if (done == v.size()) return FeedBytes(m, "}", next);
  size_t i = 0;
  for (auto it = v.begin(); it != v.end(); ++it, ++i) {
    if (used[i]) continue;
    const std::string key = absl::StrCat(done == 0 ? "" : ",", Json(it.key()).dump(), ":");
    used[i] = true;
    const bool ok = FeedBytes(m, key, [&](const GrammarMatcher& a) {
      return Feed(a, it.value(),
                  [&](const GrammarMatcher& b) { return FeedObject(b, v, used, done + 1, next); });
    });
    used[i] = false;
    if (ok) return true;
  }
  return false;
}

bool Feed(const GrammarMatcher& m, const Json& v, const Continue& next) {
  if (v.is_number()) {
    for (const std::string& s : NumberSpellings(v)) {
      if (FeedBytes(m, s, next)) return true;
    }
    return false;
  }
  if (v.is_array()) {
    return FeedBytes(m, "[", [&](const GrammarMatcher& a) { return FeedArray(a, v, 0, next); });
  }
  if (v.is_object()) {
    std::vector<bool> used(v.size(), false);
    return FeedBytes(m, "{",
                     [&](const GrammarMatcher& a) { return FeedObject(a, v, used, 0, next); });
  }
  return FeedBytes(m, v.dump(), next);
}

bool Accepts(const std::shared_ptr<const CompiledGrammar>& g, const Json& instance) {
  GrammarMatcher m(g);
  return Feed(m, instance, [](const GrammarMatcher& end) { return end.CanEnd(); });
}

// strict = false: JSON Schema's own default (additional properties allowed).
JsonSchemaOptions SuiteOptions(bool compact) {
  JsonSchemaOptions o;
  o.compact = compact;
  o.strict = false;
  return o;
}

absl::StatusOr<std::shared_ptr<const CompiledGrammar>> Compile(
    const Json& schema, const std::shared_ptr<const TokenVocabulary>& vocab,
    const JsonSchemaOptions& options) {
  absl::StatusOr<Grammar> g = CompileJsonSchema(schema.dump(), options);
  if (!g.ok()) return g.status();
  return CompiledGrammar::Create(*std::move(g), vocab);
}

// Pointers (as token lists) of every "oneOf" in the schema.
void FindOneOfs(const Json& s, std::vector<std::string> at,
                std::vector<std::vector<std::string>>* out) {
  if (s.is_object()) {
    for (auto it = s.begin(); it != s.end(); ++it) {
      std::vector<std::string> child = at;
      child.push_back(it.key());
      if (it.key() == "oneOf" && it.value().is_array()) out->push_back(child);
      FindOneOfs(it.value(), child, out);
    }
  } else if (s.is_array()) {
    for (size_t i = 0; i < s.size(); ++i) {
      std::vector<std::string> child = at;
      child.push_back(std::to_string(i));
      FindOneOfs(s[i], child, out);
    }
  }
}

Json* At(Json& s, const std::vector<std::string>& tokens) {
  Json* node = &s;
  for (const std::string& t : tokens)
    node = node->is_array() ? &(*node)[std::stoul(t)] : &(*node)[t];
  return node;
}

// How many branches of the schema's only oneOf accept `instance` on their own (nullopt when the
// schema has more than one oneOf, or a branch alone does not compile).
std::optional<int> OneOfBranchesAccepting(const Json& schema, const Json& instance,
                                          const std::shared_ptr<const TokenVocabulary>& vocab,
                                          const JsonSchemaOptions& options) {
  std::vector<std::vector<std::string>> one_ofs;
  FindOneOfs(schema, {}, &one_ofs);
  if (one_ofs.size() != 1) return std::nullopt;
  Json copy = schema;
  const Json branches = *At(copy, one_ofs[0]);
  int accepting = 0;
  for (const Json& branch : branches) {
    *At(copy, one_ofs[0]) = Json::array({branch});
    absl::StatusOr<std::shared_ptr<const CompiledGrammar>> g = Compile(copy, vocab, options);
    if (!g.ok()) {
      // A branch that accepts nothing accepts this instance neither.
      if (absl::StrContains(g.status().message(), "accepts no")) continue;
      return std::nullopt;
    }
    accepting += Accepts(*g, instance);
  }
  return accepting;
}

// The keyword an "unsupported keyword" error names ("format" with its value), or a category.
std::string SkipReason(absl::string_view message) {
  static const std::regex kKeyword(R"re(unsupported keyword "([^"]+)"(?: \(format ("[^"]+"))?)re");
  std::cmatch m;
  const std::string text(message);
  if (std::regex_search(text.c_str(), m, kKeyword)) {
    return m[2].matched ? absl::StrCat("format ", m[2].str()) : m[1].str();
  }
  if (text.find(": pattern \"") != std::string::npos) return "pattern (regex refused)";
  return "";
}

fs::path SuiteDir() {
  if (const char* env = std::getenv("MUSE_JSON_SCHEMA_SUITE")) return env;
  return "/usr/share/json-schema-test-suite/tests";
}

// Draft 2019-09 from the suite when it has it, else the official files kept in the repository
// (Debian's package stops at draft 7; tests/structured/third_party/json-schema-test-suite).
fs::path Draft201909Dir(const fs::path& dir) {
  if (fs::is_directory(dir / "draft2019-09")) return dir / "draft2019-09";
  return fs::path(MUSE_SOURCE_DIR) / "tests/structured/third_party/json-schema-test-suite" /
         "draft2019-09";
}

std::vector<fs::path> SuiteFiles(const fs::path& dir) {
  std::vector<fs::path> files;
  const fs::path d2019 = Draft201909Dir(dir);
  for (const fs::path& sub :
       {dir / "draft7", dir / "draft7/optional", dir / "draft7/optional/format", d2019,
        d2019 / "optional", d2019 / "optional/format"}) {
    if (!fs::is_directory(sub)) continue;
    for (const fs::directory_entry& e : fs::directory_iterator(sub)) {
      if (e.is_regular_file() && e.path().extension() == ".json") files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Runs every case; prints the counts when `verbose`.
void RunSuite(const JsonSchemaOptions& options, bool verbose) {
  const fs::path dir = SuiteDir();
  if (!fs::is_directory(dir / "draft7")) {
    FAIL() << dir << "/draft7 is missing: install Debian's json-schema-test-suite "
           << "(scripts/setup.sh) or set MUSE_JSON_SCHEMA_SUITE";
  }
  if (verbose) {
    std::cout << "draft7: " << (dir / "draft7").string()
              << "\ndraft2019-09: " << Draft201909Dir(dir).string() << "\n";
  }
  const std::shared_ptr<const TokenVocabulary> vocab = ByteVocab();
  int used = 0, agree = 0, empty_schema = 0, overlaps = 0, leap_seconds = 0, skipped = 0;
  std::map<std::string, int> skipped_by;
  std::vector<std::string> failures;
  for (const fs::path& file : SuiteFiles(dir)) {
    std::ifstream in(file);
    const Json groups = Json::parse(in);
    const std::string name = file.string().substr(file.string().rfind("/draft") + 1);
    int file_used = 0, file_skipped = 0;
    for (const Json& group : groups) {
      const Json& schema = group["schema"];
      const Json& tests = group["tests"];
      absl::StatusOr<std::shared_ptr<const CompiledGrammar>> g = Compile(schema, vocab, options);
      if (!g.ok()) {
        const std::string reason = SkipReason(g.status().message());
        if (!reason.empty()) {
          skipped_by[reason] += static_cast<int>(tests.size());
          skipped += static_cast<int>(tests.size());
          file_skipped += static_cast<int>(tests.size());
          continue;
        }
        if (absl::StrContains(g.status().message(), "accepts no")) {
          // The schema accepts nothing: every instance must be invalid.
          for (const Json& t : tests) {
            ++used;
            ++file_used;
            if (t["valid"].get<bool>()) {
              failures.push_back(absl::StrCat(
                  name, " / ", group["description"].get<std::string>(), " / ",
                  t["description"].get<std::string>(),
                  ": valid, but the schema compiled to nothing: ", g.status().message()));
            } else {
              ++agree;
              ++empty_schema;
            }
          }
          continue;
        }
        failures.push_back(absl::StrCat(name, " / ", group["description"].get<std::string>(),
                                        ": unexpected compile error: ", g.status().message()));
        continue;
      }
      for (const Json& t : tests) {
        ++used;
        ++file_used;
        const bool valid = t["valid"].get<bool>();
        const bool accepted = Accepts(*g, t["data"]);
        if (accepted == valid) {
          ++agree;
          continue;
        }
        if (accepted && !valid) {
          const std::optional<int> n = OneOfBranchesAccepting(schema, t["data"], vocab, options);
          if (n && *n >= 2) {
            ++overlaps;
            continue;
          }
        }
        // By design: `format` time / date-time allow second 60 at any hour and minute, where
        // the 2019-09 suite requires 23:59 UTC once the offset is applied. Exact, that is a
        // finite but crossing dependency (hour <-> offset hour, minute <-> offset minute):
        // ~1,440 alternatives per format, each position a token class -- too dear for a rule
        // no generator needs. Counted; anything else with :60 still fails.
        if (accepted && !valid && t["data"].is_string() &&
            (absl::StrContains(name, "format/time.json") ||
             absl::StrContains(name, "format/date-time.json")) &&
            std::regex_search(t["data"].get<std::string>(),
                              std::regex(R"(^([0-9T:-]*T)?[0-9]{2}:[0-9]{2}:60)"))) {
          ++leap_seconds;
          continue;
        }
        failures.push_back(absl::StrCat(name, " / ", group["description"].get<std::string>(), " / ",
                                        t["description"].get<std::string>(), ": data ",
                                        t["data"].dump(), " is ", valid ? "valid" : "invalid",
                                        " but the grammar ", accepted ? "accepts" : "rejects",
                                        " it; schema ", schema.dump()));
      }
    }
    if (verbose) {
      std::cout << "  " << name << ": " << file_used << " used, " << file_skipped << " skipped\n";
    }
  }
  std::cout << (options.compact ? "compact" : "with whitespace") << ": ";
  std::cout << "cases used: " << used << " (grammar agrees with the suite: " << agree
            << ", of which " << empty_schema << " under a schema that accepts nothing; "
            << "oneOf overlaps (valid for the grammar, which compiles oneOf as anyOf; each shown "
               "to match >= 2 branches): "
            << overlaps
            << "; leap seconds away from 23:59 UTC (accepted by design): " << leap_seconds
            << "; disagreements: " << failures.size() << ")\n";
  std::cout << "cases skipped: " << skipped << (verbose ? ", by keyword:" : "") << "\n";
  std::vector<std::pair<int, std::string>> by_count;
  for (const auto& [k, n] : skipped_by) by_count.emplace_back(-n, k);
  std::sort(by_count.begin(), by_count.end());
  for (const auto& [n, k] : by_count) {
    if (verbose) std::cout << "  " << k << ": " << -n << "\n";
  }
  for (const std::string& f : failures) ADD_FAILURE() << f;
  EXPECT_GE(used, 200);  // the suite was found and read
}

TEST(JsonSchemaTestSuite, AcceptsExactlyTheValidInstances) { RunSuite(SuiteOptions(true), true); }

// The whitespace-tolerant grammar, restricted to compact texts, is the compact grammar: the same
// verdict on every case.
TEST(JsonSchemaTestSuite, SameVerdictsWithOptionalWhitespace) {
  RunSuite(SuiteOptions(false), false);
}

}  // namespace
}  // namespace muse::structured
