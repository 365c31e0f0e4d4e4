// CompileJsonSchema / JsonObjectGrammar: the language each keyword compiles to (checked with the
// real GrammarMatcher over a byte-level vocabulary), the error messages, and conformance with the
// JSON Schema Test Suite (Debian json-schema-test-suite: draft 7, its format tests, and
// draft 2019-09 where the installed version has it).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "src/structured/compile.h"
#include "src/structured/matcher.h"
#include "src/structured/token_vocabulary.h"

namespace muse::structured {
namespace {

using Json = nlohmann::ordered_json;
using ::testing::HasSubstr;

// Token i < 256 is byte i; 256 is EOS.
std::shared_ptr<const TokenVocabulary> ByteVocab() {
  static const auto* const kVocab = [] {
    std::vector<std::string> tokens;
    for (int b = 0; b < 256; ++b) tokens.emplace_back(1, static_cast<char>(b));
    tokens.emplace_back("</s>");
    return new std::shared_ptr<const TokenVocabulary>(
        TokenVocabulary::FromBytes(std::move(tokens), {256}));
  }();
  return *kVocab;
}

class Language {
 public:
  explicit Language(Grammar g) {
    absl::StatusOr<std::shared_ptr<const CompiledGrammar>> c =
        CompiledGrammar::Create(std::move(g), ByteVocab());
    EXPECT_TRUE(c.ok()) << c.status();
    if (c.ok()) compiled_ = *c;
  }
  bool Accepts(std::string_view text) const {
    if (!compiled_) return false;
    GrammarMatcher m(compiled_);
    return m.AcceptBytes(text) && m.CanEnd();
  }
  const Grammar& grammar() const { return compiled_->grammar(); }

 private:
  std::shared_ptr<const CompiledGrammar> compiled_;
};

Language MustCompile(const std::string& schema, JsonSchemaOptions options = {}) {
  absl::StatusOr<Grammar> g = CompileJsonSchema(schema, options);
  EXPECT_TRUE(g.ok()) << schema << ": " << g.status();
  return Language(g.ok() ? *std::move(g) : Grammar{});
}

std::string CompileError(const std::string& schema, JsonSchemaOptions options = {}) {
  absl::StatusOr<Grammar> g = CompileJsonSchema(schema, options);
  EXPECT_FALSE(g.ok()) << schema << " compiled";
  if (g.ok()) return "";
  EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(g.status().message());
}

JsonSchemaOptions Lax() {
  JsonSchemaOptions o;
  o.strict = false;
  return o;
}

// ---- integers ----

void ExpectIntegerRange(const std::string& schema, std::optional<int64_t> lo,
                        std::optional<int64_t> hi, const std::vector<int64_t>& probes) {
  Language lang = MustCompile(schema);
  for (int64_t n : probes) {
    const bool in = (!lo || n >= *lo) && (!hi || n <= *hi);
    EXPECT_EQ(lang.Accepts(std::to_string(n)), in) << schema << " on " << n;
  }
}

TEST(JsonSchemaIntegers, SmallRangesExhaustively) {
  std::vector<int64_t> probes;
  for (int64_t n = -1300; n <= 1300; ++n) probes.push_back(n);
  const std::vector<std::pair<std::optional<int64_t>, std::optional<int64_t>>> ranges = {
      {0, 0},     {0, 9},    {0, 10},     {1, 1000}, {7, 1234}, {-5, 5},     {-1234, -7},
      {-100, 99}, {95, 105}, {199, 1201}, {-1, -1},  {3, 3},    {{}, 17},    {-17, {}},
      {{}, -230}, {230, {}}, {{}, {}},    {0, {}},   {{}, 0},   {-999, 999}, {100, 999}};
  for (const auto& [lo, hi] : ranges) {
    Json s = {{"type", "integer"}};
    if (lo) s["minimum"] = *lo;
    if (hi) s["maximum"] = *hi;
    ExpectIntegerRange(s.dump(), lo, hi, probes);
  }
}

TEST(JsonSchemaIntegers, RandomWideRangesAtTheirEdges) {
  std::mt19937_64 rng(17);
  for (int round = 0; round < 60; ++round) {
    const int digits_a = 1 + static_cast<int>(rng() % 18),
              digits_b = 1 + static_cast<int>(rng() % 18);
    auto draw = [&](int digits) {
      int64_t x = static_cast<int64_t>(rng() % static_cast<uint64_t>(std::pow(10.0, digits)));
      return rng() % 2 ? -x : x;
    };
    int64_t lo = draw(digits_a), hi = draw(digits_b);
    if (lo > hi) std::swap(lo, hi);
    std::vector<int64_t> probes;
    for (int64_t p : {lo, hi, (lo / 2) + (hi / 2)}) {
      for (int64_t d = -3; d <= 3; ++d) probes.push_back(p + d);
    }
    for (int i = 0; i < 20; ++i) probes.push_back(draw(1 + static_cast<int>(rng() % 18)));
    const Json s = {{"type", "integer"}, {"minimum", lo}, {"maximum", hi}};
    ExpectIntegerRange(s.dump(), lo, hi, probes);
  }
}

TEST(JsonSchemaIntegers, Int64LimitsExclusiveAndFractionalBounds) {
  Language all = MustCompile(R"({"type":"integer","minimum":-9223372036854775808,
                                 "maximum":9223372036854775807})");
  EXPECT_TRUE(all.Accepts("-9223372036854775808"));
  EXPECT_TRUE(all.Accepts("9223372036854775807"));
  EXPECT_FALSE(all.Accepts("-9223372036854775809"));
  EXPECT_FALSE(all.Accepts("9223372036854775808"));
  EXPECT_FALSE(all.Accepts("10000000000000000000"));
  // exclusiveMinimum 1.5 -> 2, maximum 7.9 -> 7, exclusiveMaximum 7 -> 6.
  ExpectIntegerRange(R"({"type":"integer","exclusiveMinimum":1.5,"maximum":7.9})", 2, 7,
                     {0, 1, 2, 3, 7, 8});
  ExpectIntegerRange(R"({"type":"integer","exclusiveMinimum":1,"exclusiveMaximum":7})", 2, 6,
                     {1, 2, 6, 7});
  // Canonical spellings only.
  Language any = MustCompile(R"({"type":"integer"})");
  for (const char* bad : {"-0", "01", "+1", "1.0", "1e2", "", "-"}) {
    EXPECT_FALSE(any.Accepts(bad)) << bad;
  }
  EXPECT_THAT(CompileError(R"({"type":"integer","minimum":5,"maximum":4})"),
              HasSubstr("the schema accepts no value"));
  EXPECT_THAT(CompileError(R"({"type":"integer","maximum":1e30})"),
              HasSubstr("schema /maximum: \"maximum\" 1e+30 is outside the supported 64-bit"));
}

TEST(JsonSchemaNumbers, JsonNumberSyntaxAndUnsupportedBounds) {
  Language num = MustCompile(R"({"type":"number"})");
  for (const char* ok : {"0", "-0", "1.5", "-12.25e+3", "1E-7", "0.0", "10"}) {
    EXPECT_TRUE(num.Accepts(ok)) << ok;
  }
  for (const char* bad : {"01", ".5", "1.", "+1", "1e", "--1", "NaN"})
    EXPECT_FALSE(num.Accepts(bad)) << bad;
  EXPECT_EQ(CompileError(R"({"type":"number","minimum":0})"),
            "schema (root): unsupported keyword \"minimum\" (bounds are supported for \"type\": "
            "\"integer\" only)");
}

// ---- strings ----

TEST(JsonSchemaStrings, LengthCountsCodePointsAndEscapes) {
  Language two = MustCompile(R"({"type":"string","minLength":2,"maxLength":2})");
  for (const char* ok : {R"("ab")", "\"\xc3\xa9\xc3\xa9\"", R"("\"\\")", R"("\u00e9x")",
                         R"("\ud83d\ude00x")", "\"\xf0\x9f\x98\x80x\"", R"("\/\n")"}) {
    EXPECT_TRUE(two.Accepts(ok)) << ok;
  }
  for (const char* bad : {R"("a")", R"("abc")", R"("\ud83dx")", R"("\ude00x")", "\"a\nb\"",
                          R"("\x")", R"("\u12")", "\"a\x01\""}) {
    EXPECT_FALSE(two.Accepts(bad)) << bad;
  }
  Language any = MustCompile(R"({"type":"string"})");
  EXPECT_TRUE(any.Accepts(R"("")"));
  EXPECT_TRUE(any.Accepts(R"("\uD83D\uDE00 \u0000")"));
  EXPECT_FALSE(any.Accepts("\"\xff\""));  // not UTF-8
  EXPECT_THAT(CompileError(R"({"type":"string","maxLength":1000000})"),
              HasSubstr("schema (root): unsupported keyword \"maxLength\" (1000000 is above the "
                        "supported 10000)"));
}

TEST(JsonSchemaStrings, PatternIsUnanchoredAndEscapedAsJson) {
  Language anchored = MustCompile(R"({"type":"string","pattern":"^[a-c]+$"})");
  EXPECT_TRUE(anchored.Accepts(R"("abca")"));
  EXPECT_FALSE(anchored.Accepts(R"("abcd")"));
  EXPECT_FALSE(anchored.Accepts(R"("")"));
  Language inside = MustCompile(R"({"type":"string","pattern":"b+c"})");
  EXPECT_TRUE(inside.Accepts(R"("xxbbcyy")"));
  EXPECT_TRUE(inside.Accepts(R"("\n\"bc\\")"));
  EXPECT_FALSE(inside.Accepts(R"("bxc")"));
  Language start = MustCompile(R"({"type":"string","pattern":"^a"})");
  EXPECT_TRUE(start.Accepts(R"("abc")"));
  EXPECT_FALSE(start.Accepts(R"("ba")"));
  // Characters JSON must escape: the pattern sees the decoded text.
  Language quote = MustCompile(R"({"type":"string","pattern":"^a\"b\\n$"})");
  EXPECT_TRUE(quote.Accepts(R"("a\"b\n")"));
  EXPECT_TRUE(quote.Accepts(R"("a\"b\u000a")"));
  EXPECT_FALSE(quote.Accepts("\"a\"b\n\""));
  Language alt = MustCompile(R"({"type":"string","pattern":"cat|dog"})");
  EXPECT_TRUE(alt.Accepts(R"("hotdogs")"));
  EXPECT_FALSE(alt.Accepts(R"("cow")"));
  EXPECT_THAT(CompileError(R"({"type":"string","pattern":"^a|b$"})"),
              HasSubstr("unsupported keyword \"pattern\" (anchors inside a top-level"));
  EXPECT_THAT(CompileError(R"js({"properties":{"p":{"pattern":"a(?=b)"}}})js"),
              HasSubstr("schema /properties/p/pattern: pattern \"a(?=b)\": regex offset"));
  EXPECT_THAT(CompileError(R"({"type":"string","pattern":"a","minLength":2})"),
              HasSubstr("unsupported keyword \"minLength\" (beside \"pattern\")"));
}

TEST(JsonSchemaStrings, DateMatchesTheCalendar) {
  Language date = MustCompile(R"({"type":"string","format":"date"})");
  for (int year : {0, 4, 100, 400, 1900, 1999, 2000, 2023, 2024, 2100, 9996}) {
    for (unsigned month = 0; month <= 13; ++month) {
      for (unsigned day = 0; day <= 32; ++day) {
        char text[32];
        std::snprintf(text, sizeof(text), "\"%04d-%02u-%02u\"", year, month, day);
        const bool valid = std::chrono::year_month_day{
            std::chrono::year{year}, std::chrono::month{month},
            std::chrono::day{
                day}}.ok();
        EXPECT_EQ(date.Accepts(text), valid) << text;
      }
    }
  }
  EXPECT_FALSE(date.Accepts(R"("2024-1-01")"));
}

TEST(JsonSchemaStrings, TimeDateTimeUuidEmail) {
  Language time = MustCompile(R"({"type":"string","format":"time"})");
  for (const char* ok :
       {R"("08:30:06Z")", R"("23:59:60.5+01:00")", R"("00:00:00.000z")", R"("12:00:00-23:59")"}) {
    EXPECT_TRUE(time.Accepts(ok)) << ok;
  }
  for (const char* bad : {R"("24:00:00Z")", R"("08:60:00Z")", R"("08:30:06")", R"("8:30:06Z")",
                          R"("08:30:06+24:00")", R"("08:30:06.Z")"}) {
    EXPECT_FALSE(time.Accepts(bad)) << bad;
  }
  Language dt = MustCompile(R"({"type":"string","format":"date-time"})");
  EXPECT_TRUE(dt.Accepts(R"("2024-02-29T08:30:06.283185Z")"));
  EXPECT_TRUE(dt.Accepts(R"("1963-06-19t08:30:06z")"));
  EXPECT_FALSE(dt.Accepts(R"("2023-02-29T08:30:06Z")"));
  EXPECT_FALSE(dt.Accepts(R"("2023-02-28 08:30:06Z")"));
  Language uuid = MustCompile(R"({"type":"string","format":"uuid"})");
  EXPECT_TRUE(uuid.Accepts(R"("2EB8AA08-AA98-11EA-B4AA-73B441D16380")"));
  EXPECT_TRUE(uuid.Accepts(R"("2eb8aa08-aa98-11ea-b4aa-73b441d16380")"));
  EXPECT_FALSE(uuid.Accepts(R"("2eb8aa08-aa98-11ea-b4aa-73b441d1638")"));
  EXPECT_FALSE(uuid.Accepts(R"("2eb8aa08aa9811eab4aa73b441d16380")"));
  Language email = MustCompile(R"({"type":"string","format":"email"})");
  EXPECT_TRUE(email.Accepts(R"("joe.bloggs+x@example.com")"));
  EXPECT_FALSE(email.Accepts(R"("joe..bloggs@example.com")"));
  EXPECT_FALSE(email.Accepts(R"("2962")"));
  EXPECT_THAT(CompileError(R"({"type":"string","format":"ipv4"})"),
              HasSubstr("schema (root): unsupported keyword \"format\" (format \"ipv4\""));
  // A format applies to its own type only; unknown ones are refused whatever the type.
  EXPECT_TRUE(MustCompile(R"({"type":["integer","string"],"format":"date"})").Accepts("12"));
  EXPECT_THAT(CompileError(R"({"type":"integer","format":"color"})"),
              HasSubstr("unsupported keyword \"format\" (format \"color\""));
}

TEST(JsonSchemaIntegers, OpenApiIntegerFormats) {
  Language i32 = MustCompile(R"({"type":["integer","string"],"format":"int32","minimum":-5})");
  EXPECT_TRUE(i32.Accepts("2147483647"));
  EXPECT_FALSE(i32.Accepts("2147483648"));
  EXPECT_TRUE(i32.Accepts("-5"));
  EXPECT_FALSE(i32.Accepts("-6"));
  EXPECT_TRUE(i32.Accepts(R"("any text")"));  // int32 says nothing about strings
  Language i64 = MustCompile(R"({"type":"integer","format":"int64"})");
  EXPECT_TRUE(i64.Accepts("-9223372036854775808"));
  EXPECT_FALSE(i64.Accepts("9223372036854775808"));
  EXPECT_THAT(CompileError(R"({"type":"number","format":"int32"})"),
              HasSubstr("(format \"int32\" applies to \"type\": \"integer\" only)"));
}

// ---- objects ----

TEST(JsonSchemaObjects, OptionalPropertiesKeepOrderAndCommas) {
  Language lang = MustCompile(R"({"type":"object","properties":{
      "a":{"type":"integer"},"b":{"type":"integer"},"c":{"type":"integer"},"d":{"type":"integer"}},
      "required":["b"],"additionalProperties":false})");
  const std::string names = "abcd";
  for (int mask = 0; mask < 16; ++mask) {
    std::string text = "{";
    for (int i = 0; i < 4; ++i) {
      if (!(mask >> i & 1)) continue;
      if (text.size() > 1) text += ",";
      text += std::string("\"") + names[i] + "\":" + std::to_string(i);
    }
    text += "}";
    EXPECT_EQ(lang.Accepts(text), (mask & 2) != 0) << text;
  }
  for (const char* bad : {R"({"b":1,"a":0})", R"({,"b":1})", R"({"b":1,})", R"({"a":0,,"b":1})",
                          R"({"b":1,"e":1})", R"({"b":1,"b":1})", R"({ "b":1})"}) {
    EXPECT_FALSE(lang.Accepts(bad)) << bad;
  }
  Language optional = MustCompile(R"({"properties":{"x":{"const":1}}})");
  EXPECT_TRUE(optional.Accepts("{}"));
  EXPECT_TRUE(optional.Accepts(R"({"x":1})"));
  EXPECT_FALSE(optional.Accepts(R"({"x":2})"));
  EXPECT_TRUE(optional.Accepts("[]"));  // no "type": other types are unconstrained
  EXPECT_TRUE(optional.Accepts("\"s\""));
}

TEST(JsonSchemaObjects, AdditionalKeysDifferFromDeclaredNames) {
  Language lang = MustCompile(R"({"type":"object","properties":{"a":{"type":"string"},
      "q\"\n":{"type":"string"}},"additionalProperties":{"type":"integer"}})");
  for (const char* ok : {R"({})", R"({"a":"x","b":1})", R"({"b":1})", R"({"ab":1,"":2})",
                         R"({"A":1})", R"({"q\"":1})", R"({"q\"\n":"s","q\"\nz":3})"}) {
    EXPECT_TRUE(lang.Accepts(ok)) << ok;
  }
  // A declared name cannot come back as an "additional" key (with another value type) - in any
  // canonical spelling. Declared keys themselves are written as serialisers write them (\n, not
  // \u000a), so the last one is refused as a declared key too.
  for (const char* bad :
       {R"({"a":1})", R"({"b":1,"a":"x"})", R"({"q\"\n":1})", R"({"q\"\u000a":1})",
        R"({"q\"\u000A":1})", R"({"a":"x","b":"y"})", R"({"q\"\u000A":"s"})"}) {
    EXPECT_FALSE(lang.Accepts(bad)) << bad;
  }
  // additionalProperties unspecified: forbidden in strict mode (OpenAI), allowed otherwise.
  const std::string open = R"({"type":"object","properties":{"a":{}}})";
  EXPECT_FALSE(MustCompile(open).Accepts(R"({"a":1,"b":2})"));
  EXPECT_TRUE(MustCompile(open, Lax()).Accepts(R"({"a":1,"b":[2,{"c":null}]})"));
  // A required name with no declared schema takes additionalProperties'.
  Language req = MustCompile(R"({"required":["n"],"additionalProperties":{"type":"boolean"}})");
  EXPECT_TRUE(req.Accepts(R"({"n":true})"));
  EXPECT_TRUE(req.Accepts(R"({"n":true,"m":false})"));
  EXPECT_FALSE(req.Accepts(R"({"n":1})"));
  EXPECT_FALSE(req.Accepts(R"({"m":false})"));
  EXPECT_THAT(CompileError(R"({"type":"object","required":["n"]})"),
              HasSubstr("the schema accepts no value"));
}

TEST(JsonSchemaObjects, WhitespacePolicy) {
  const std::string schema = R"({"type":"object","properties":{"a":{"type":"array"},
      "b":{"enum":[{"x":[1,2]}]}}})";
  JsonSchemaOptions loose;
  loose.compact = false;
  loose.max_whitespace = 2;
  Language ws = MustCompile(schema, loose);
  Language compact = MustCompile(schema);
  for (const char* text : {R"({ "a" : [ 1 , 2 ] ,"b":{ "x" :[1, 2] } })", "{\n\t\"a\":[]}",
                           R"({ })", R"({"a":[ ]})"}) {
    EXPECT_TRUE(ws.Accepts(text)) << text;
    EXPECT_FALSE(compact.Accepts(text)) << text;
  }
  EXPECT_TRUE(compact.Accepts(R"({"a":[1,2],"b":{"x":[1,2]}})"));
  EXPECT_FALSE(ws.Accepts(R"({   "a":[]})"));  // 3 > max_whitespace
  EXPECT_FALSE(ws.Accepts(R"( {"a":[]})"));    // nothing before or after the value
}

// ---- arrays ----

TEST(JsonSchemaArrays, PrefixItemsRestAndCounts) {
  // 2020-12: prefixItems + items.
  Language tuple = MustCompile(R"({"type":"array","prefixItems":[{"type":"integer"},
      {"type":"string"}],"items":{"type":"boolean"},"minItems":1,"maxItems":4})");
  for (const char* ok : {"[1]", R"([1,"a"])", R"([1,"a",true])", R"([1,"a",true,false])"}) {
    EXPECT_TRUE(tuple.Accepts(ok)) << ok;
  }
  for (const char* bad :
       {"[]", R"(["a"])", R"([1,2])", R"([1,"a",1])", R"([1,"a",true,false,true])", "[1,]"}) {
    EXPECT_FALSE(tuple.Accepts(bad)) << bad;
  }
  // Draft 7: items as an array + additionalItems.
  Language d7 = MustCompile(R"({"items":[{"const":0},{"const":1}],"additionalItems":false})");
  EXPECT_TRUE(d7.Accepts("[]"));
  EXPECT_TRUE(d7.Accepts("[0]"));
  EXPECT_TRUE(d7.Accepts("[0,1]"));
  EXPECT_FALSE(d7.Accepts("[0,1,2]"));
  EXPECT_FALSE(d7.Accepts("[1]"));
  // A false item schema caps the length.
  Language none = MustCompile(R"({"type":"array","items":false})");
  EXPECT_TRUE(none.Accepts("[]"));
  EXPECT_FALSE(none.Accepts("[1]"));
  Language counted = MustCompile(R"({"type":"array","items":{"type":"null"},"minItems":2,
                                     "maxItems":3})");
  EXPECT_FALSE(counted.Accepts("[null]"));
  EXPECT_TRUE(counted.Accepts("[null,null]"));
  EXPECT_TRUE(counted.Accepts("[null,null,null]"));
  EXPECT_FALSE(counted.Accepts("[null,null,null,null]"));
  EXPECT_EQ(CompileError(R"({"type":"array","minItems":3,"maxItems":2})"),
            "schema (root): the schema accepts no value");
}

// ---- enum, const, combinators, refs ----

TEST(JsonSchemaValues, EnumConstAndTypeFilter) {
  Language e = MustCompile(R"({"enum":["a",1,null,{"k":[true]},[1.5]],"type":["string","object",
                                 "array"]})");
  EXPECT_TRUE(e.Accepts(R"("a")"));
  EXPECT_TRUE(e.Accepts(R"({"k":[true]})"));
  EXPECT_TRUE(e.Accepts("[1.5]"));
  EXPECT_FALSE(e.Accepts("1"));
  EXPECT_FALSE(e.Accepts("null"));
  Language c = MustCompile(R"({"const":"\u00e9\n","enum":["x","\u00e9\n"]})");
  EXPECT_TRUE(c.Accepts("\"\xc3\xa9\\n\""));
  EXPECT_FALSE(c.Accepts(R"("x")"));
  EXPECT_THAT(CompileError(R"({"enum":["a","bb"],"minLength":2})"),
              HasSubstr("unsupported keyword \"minLength\" (beside \"enum\")"));
  EXPECT_EQ(CompileError(R"({"enum":[1],"type":"string"})"),
            "schema (root): the schema accepts no value");
}

TEST(JsonSchemaValues, AnyOfOneOfAllOfMergeWithSiblings) {
  Language any = MustCompile(R"({"type":"string","anyOf":[{"maxLength":1},{"minLength":3}]})");
  EXPECT_TRUE(any.Accepts(R"("a")"));
  EXPECT_TRUE(any.Accepts(R"("abc")"));
  EXPECT_FALSE(any.Accepts(R"("ab")"));
  EXPECT_FALSE(any.Accepts("1"));
  // oneOf is compiled as anyOf (an instance of both branches is accepted).
  Language one = MustCompile(R"({"oneOf":[{"type":"integer"},{"minimum":2,"type":"integer"}]})");
  EXPECT_TRUE(one.Accepts("3"));
  Language all = MustCompile(R"({"allOf":[{"type":"object"},{"properties":{"a":{"type":"null"}},
                                  "required":["a"],"additionalProperties":false}]})");
  EXPECT_TRUE(all.Accepts(R"({"a":null})"));
  EXPECT_FALSE(all.Accepts(R"({"a":null,"b":1})"));
  EXPECT_FALSE(all.Accepts("null"));
  EXPECT_FALSE(MustCompile(R"({"allOf":[true,{"const":1}]})").Accepts("2"));
  // Properties of combined schemas stack, the base's first.
  Language stacked = MustCompile(R"({"properties":{"a":{"type":"integer"}},"required":["a"],
      "allOf":[{"properties":{"b":{"type":"string"}},"required":["b"]}]})");
  EXPECT_TRUE(stacked.Accepts(R"({"a":1,"b":"x"})"));
  EXPECT_FALSE(stacked.Accepts(R"({"a":1})"));
  EXPECT_FALSE(stacked.Accepts(R"({"a":1,"b":2})"));
  EXPECT_THAT(CompileError(R"({"properties":{"a":{}},"anyOf":[{"properties":{"a":{}}}]})"),
              HasSubstr("schema /anyOf/0: unsupported keyword \"properties\" (\"a\" is also "
                        "declared at /properties"));
  EXPECT_THAT(CompileError(R"({"allOf":[{"properties":{"a":{}}}],"additionalProperties":false})"),
              HasSubstr("unsupported keyword \"allOf\" (\"properties\" here and "
                        "\"additionalProperties\" at (root) constrain the same thing"));
  EXPECT_THAT(CompileError(R"({"allOf":[{"maxLength":2},{"maxLength":3}]})"),
              HasSubstr("schema /allOf/1: unsupported keyword \"allOf\""));
}

TEST(JsonSchemaRefs, RecursionLocalPointersAndErrors) {
  Language tree = MustCompile(R"({"$defs":{"node":{"type":"object","properties":{
      "v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},
      "required":["v"]}},"$ref":"#/$defs/node"})");
  EXPECT_TRUE(tree.Accepts(R"({"v":1})"));
  EXPECT_TRUE(tree.Accepts(R"({"v":1,"kids":[{"v":2,"kids":[]},{"v":3,"kids":[{"v":4}]}]})"));
  EXPECT_FALSE(tree.Accepts(R"({"v":1,"kids":[{"kids":[]}]})"));
  Language self = MustCompile(R"({"properties":{"n":{"$ref":"#"}},"type":"object"})", Lax());
  EXPECT_TRUE(self.Accepts(R"({"n":{"n":{}}})"));
  Language escaped = MustCompile(R"({"definitions":{"a/b":{"const":1},"c~d":{"const":2},
      "e%f":{"const":3}},"anyOf":[{"$ref":"#/definitions/a~1b"},{"$ref":"#/definitions/c~0d"},
      {"$ref":"#/definitions/e%25f"}]})");
  for (const char* ok : {"1", "2", "3"}) EXPECT_TRUE(escaped.Accepts(ok)) << ok;
  EXPECT_FALSE(escaped.Accepts("4"));
  EXPECT_THAT(CompileError(R"({"type":"object","properties":{"n":{"$ref":"#"}},"required":["n"]})"),
              HasSubstr("can never finish"));
  EXPECT_EQ(CompileError(R"({"properties":{"a":{"$ref":"http://example.com/s.json"}}})"),
            "schema /properties/a: unsupported keyword \"$ref\" (remote reference "
            "\"http://example.com/s.json\"; only local references \"#/...\" are supported)");
  EXPECT_THAT(CompileError(R"({"$ref":"#foo"})"), HasSubstr("anchor reference \"#foo\""));
  EXPECT_EQ(CompileError(R"({"$ref":"#/$defs/missing"})"),
            "schema /$ref: $ref \"#/$defs/missing\" does not resolve");
  EXPECT_THAT(CompileError(R"({"$defs":{"x":{}},"$ref":"#/$defs/x","maxItems":2})"),
              HasSubstr("unsupported keyword \"maxItems\" (beside \"$ref\")"));
}

// ---- errors and annotations ----

TEST(JsonSchemaErrors, UnsupportedKeywordsNameTheirPointer) {
  EXPECT_EQ(CompileError(R"({"properties":{"a":{"patternProperties":{}}}})"),
            "schema /properties/a: unsupported keyword \"patternProperties\"");
  EXPECT_EQ(CompileError(R"({"not":{}})"), "schema (root): unsupported keyword \"not\"");
  EXPECT_EQ(CompileError(R"({"items":[{},{"if":true}]})"),
            "schema /items/1: unsupported keyword \"if\"");
  EXPECT_EQ(CompileError(R"({"properties":{"x/y":{"uniqueItems":true}}})"),
            "schema /properties/x~1y: unsupported keyword \"uniqueItems\"");
  EXPECT_EQ(CompileError(R"({"properties":{"a":{"$id":"x"}}})"),
            "schema /properties/a: unsupported keyword \"$id\" (allowed on the root only)");
  for (const char* kw : {"minProperties", "dependentRequired", "multipleOf", "contains",
                         "propertyNames", "unevaluatedProperties", "x-custom"}) {
    EXPECT_EQ(CompileError(std::string("{\"") + kw + "\":1}"),
              std::string("schema (root): unsupported keyword \"") + kw + "\"");
  }
  EXPECT_THAT(CompileError(R"({"type":"object",})"),
              HasSubstr("schema is not JSON (byte 18): parse error at line 1, column 18"));
  // Found by structured_fuzzer: a number past double's range threw out of the compiler.
  EXPECT_THAT(CompileError(R"({"type":"object","properties":1e400})"),
              HasSubstr("schema is not JSON: number overflow parsing '1e400'"));
  EXPECT_THAT(CompileError(R"({"type":"strin"})"),
              HasSubstr("schema /type: unknown type \"strin\""));
  EXPECT_EQ(CompileError("false"), "schema (root): the schema accepts no value");
  EXPECT_EQ(CompileError("3"), "schema (root): a schema must be an object or a boolean");
}

TEST(JsonSchemaErrors, DeepNestingIsRefusedNotOverflowed) {
  std::string deep;
  for (int i = 0; i < 100000; ++i) deep += R"({"items":)";
  deep += "true" + std::string(100000, '}');
  EXPECT_THAT(CompileError(deep), HasSubstr("nested deeper than 128"));
  std::string value;
  for (int i = 0; i < 100000; ++i) value += "[";
  value += std::string(100000, ']');
  EXPECT_THAT(CompileError(R"({"enum":[)" + value + "]}"),
              HasSubstr("schema (root): enum value nested deeper than 128"));
}

TEST(JsonSchemaErrors, AnnotationsAndNoOpsCompile) {
  Language lang = MustCompile(R"({"$schema":"https://json-schema.org/draft/2020-12/schema",
      "$id":"https://example.com/s","title":"t","description":"d","default":1,"examples":[1],
      "$comment":"c","deprecated":false,"readOnly":true,"writeOnly":false,"uniqueItems":false,
      "type":"integer"})");
  EXPECT_TRUE(lang.Accepts("5"));
  EXPECT_TRUE(MustCompile("true").Accepts(R"([{"a":null},1.5e3,"x",false])"));
  EXPECT_TRUE(MustCompile("{}").Accepts("null"));
}

TEST(JsonSchemaObjectMode, AnyObjectAtTheTop) {
  absl::StatusOr<Grammar> g = JsonObjectGrammar();
  ASSERT_TRUE(g.ok()) << g.status();
  Language lang(*std::move(g));
  EXPECT_TRUE(lang.Accepts("{}"));
  EXPECT_TRUE(lang.Accepts(R"({"a":[1,{"b":"\u00e9"}],"c":-1.5e-3,"d":null})"));
  for (const char* bad : {"[]", "1", R"("x")", R"({"a":})", R"({"a":1,})", R"({a:1})"}) {
    EXPECT_FALSE(lang.Accepts(bad)) << bad;
  }
}

TEST(JsonSchemaGrammar, RulesAreNamedAfterTheSchema) {
  absl::StatusOr<Grammar> g = CompileJsonSchema(
      R"({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]})");
  ASSERT_TRUE(g.ok()) << g.status();
  const std::string text = g->ToString();
  EXPECT_THAT(text, HasSubstr("property_city"));
  EXPECT_THAT(text, HasSubstr("root"));
}

}  // namespace
}  // namespace muse::structured

namespace muse::structured {
namespace {

// Not a timed test: prints the compile time of a typical tool schema (the issue's target is
// <= 10 ms), grammar only and bound to the byte vocabulary.
TEST(JsonSchemaGrammar, CompileTimeOfAToolSchema) {
  const std::string schema = R"({"type":"object","properties":{
      "location":{"type":"string","description":"City and country"},
      "unit":{"type":"string","enum":["celsius","fahrenheit"]},
      "days":{"type":"integer","minimum":1,"maximum":14},
      "when":{"type":"string","format":"date"},
      "include":{"type":"array","items":{"type":"string","enum":["wind","rain","uv"]},
                 "maxItems":3},
      "coords":{"type":"object","properties":{"lat":{"type":"number"},"lon":{"type":"number"}},
                "required":["lat","lon"],"additionalProperties":false},
      "note":{"anyOf":[{"type":"string","maxLength":200},{"type":"null"}]}},
      "required":["location","unit"],"additionalProperties":false})";
  std::vector<double> grammar_us, bound_us;
  for (int i = 0; i < 30; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    absl::StatusOr<Grammar> g = CompileJsonSchema(schema);
    const auto t1 = std::chrono::steady_clock::now();
    ASSERT_TRUE(g.ok()) << g.status();
    ASSERT_TRUE(CompiledGrammar::Create(*std::move(g), ByteVocab()).ok());
    const auto t2 = std::chrono::steady_clock::now();
    grammar_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    bound_us.push_back(std::chrono::duration<double, std::micro>(t2 - t0).count());
  }
  std::sort(grammar_us.begin(), grammar_us.end());
  std::sort(bound_us.begin(), bound_us.end());
  std::cout << "tool schema compile, median of 30: CompileJsonSchema " << grammar_us[15]
            << " us; + CompiledGrammar::Create (257-token vocabulary) " << bound_us[15] << " us\n";
}

}  // namespace
}  // namespace muse::structured

namespace muse::structured {
namespace {

// Random schemas over the keyword vocabulary, values of right and wrong types mixed: compiling
// never throws or crashes, fails only with InvalidArgument, and what compiles binds to a
// vocabulary and runs. (A structure-aware stand-in for a fuzzer; the compile is also under the
// sanitizer builds.)
class RandomSchemas {
 public:
  explicit RandomSchemas(uint32_t seed) : rng_(seed) {}

  Json Schema(int depth) {
    if (depth > 3 || Pick(8) == 0) return Pick(2) == 0;
    Json s = Json::object();
    const int n = 1 + Pick(4);
    for (int i = 0; i < n; ++i) {
      static const char* const kKeys[] = {"type",
                                          "enum",
                                          "const",
                                          "properties",
                                          "required",
                                          "additionalProperties",
                                          "items",
                                          "prefixItems",
                                          "additionalItems",
                                          "minItems",
                                          "maxItems",
                                          "minLength",
                                          "maxLength",
                                          "pattern",
                                          "format",
                                          "minimum",
                                          "maximum",
                                          "exclusiveMinimum",
                                          "exclusiveMaximum",
                                          "anyOf",
                                          "oneOf",
                                          "allOf",
                                          "$ref",
                                          "$defs",
                                          "definitions",
                                          "title",
                                          "uniqueItems",
                                          "not",
                                          "$id"};
      const std::string key = kKeys[Pick(sizeof(kKeys) / sizeof(kKeys[0]))];
      s[key] = Value(key, depth);
    }
    return s;
  }

 private:
  int Pick(int n) { return static_cast<int>(rng_() % static_cast<uint32_t>(n)); }

  Json Scalar() {
    switch (Pick(7)) {
      case 0:
        return nullptr;
      case 1:
        return Pick(2) == 0;
      case 2:
        return Pick(200) - 100;
      case 3:
        return (Pick(2000) - 1000) / 7.0;
      case 4:
        return std::string(1 + Pick(3), static_cast<char>('a' + Pick(3)));
      case 5:
        return Json::array({Pick(3), "x"});
      default:
        return Json::object({{"k", Pick(3)}});
    }
  }

  Json Value(const std::string& key, int depth) {
    if (Pick(10) == 0) return Scalar();  // often the wrong type
    if (key == "type") {
      static const char* const kTypes[] = {"null",   "boolean", "object", "array",
                                           "number", "integer", "string"};
      if (Pick(3) == 0) return Json::array({kTypes[Pick(7)], kTypes[Pick(7)]});
      return kTypes[Pick(7)];
    }
    if (key == "enum") return Json::array({Scalar(), Scalar(), Scalar()});
    if (key == "const") return Scalar();
    if (key == "properties" || key == "$defs" || key == "definitions") {
      Json p = Json::object();
      for (int i = Pick(4); i > 0; --i)
        p[std::string(1, static_cast<char>('a' + Pick(4)))] = Schema(depth + 1);
      return p;
    }
    if (key == "required")
      return Json::array({"a", std::string(1, static_cast<char>('a' + Pick(4)))});
    if (key == "prefixItems" || key == "anyOf" || key == "oneOf" || key == "allOf") {
      Json a = Json::array();
      for (int i = Pick(3); i >= 0; --i) a.push_back(Schema(depth + 1));
      return a;
    }
    if (key == "additionalProperties" || key == "items" || key == "additionalItems" ||
        key == "not") {
      return Pick(4) == 0 ? Json::array({Schema(depth + 1)}) : Schema(depth + 1);
    }
    if (key == "pattern") {
      static const char* const kPatterns[] = {"^a+$", "b|c", "[0-9]{2,3}", "(?=x)", "^x|y$", "\\"};
      return kPatterns[Pick(6)];
    }
    if (key == "format") {
      static const char* const kFormats[] = {"date",  "time",  "date-time", "uuid",
                                             "email", "int32", "int64",     "ipv4"};
      return kFormats[Pick(8)];
    }
    if (key == "$ref") {
      static const char* const kRefs[] = {
          "#",       "#/$defs/a", "#/definitions/b", "#/properties/c",
          "#/items", "#/nowhere", "http://x/y",      "#anchor"};
      return kRefs[Pick(8)];
    }
    if (key == "title") return "t";
    if (key == "uniqueItems") return Pick(2) == 0;
    if (key == "$id") return "http://x/s";
    return Pick(12) - 2;  // counts and bounds, sometimes negative
  }

  std::mt19937 rng_;
};

TEST(JsonSchemaRobustness, RandomSchemasCompileOrFailCleanly) {
  RandomSchemas gen(20261206);
  int compiled = 0, refused = 0;
  std::mt19937 rng(7);
  for (int i = 0; i < 3000; ++i) {
    const std::string text = gen.Schema(0).dump();
    for (bool compact : {true, false}) {
      JsonSchemaOptions options;
      options.compact = compact;
      options.strict = (i % 2) == 0;
      absl::StatusOr<Grammar> g = CompileJsonSchema(text, options);
      if (!g.ok()) {
        ASSERT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument)
            << text << ": " << g.status();
        ++refused;
        continue;
      }
      ++compiled;
      absl::StatusOr<std::shared_ptr<const CompiledGrammar>> c =
          CompiledGrammar::Create(*std::move(g), ByteVocab());
      ASSERT_TRUE(c.ok()) << text << ": " << c.status();
      GrammarMatcher m(*c);
      for (int step = 0; step < 8; ++step) {
        std::string b(1, "{}[]\",:0a-tn"[rng() % 12]);
        m.AcceptBytes(b);
      }
    }
  }
  std::cout << "random schemas: " << compiled << " compiled, " << refused << " refused\n";
  EXPECT_GT(compiled, 500);
  EXPECT_GT(refused, 500);
}

}  // namespace
}  // namespace muse::structured
