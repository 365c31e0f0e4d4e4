#include "src/chat/forced_tool_call.h"

#include <gtest/gtest.h>

#include "nlohmann/json.hpp"
#include "src/structured/compile.h"
#include "tests/chat/chat_test_util.h"

namespace muse::chat {
namespace {

using nlohmann::ordered_json;

const std::vector<ToolSpec> kTools = {
    {"get_weather",
     R"({"type": "object", "properties": {"unit": {"$ref": "#/$defs/unit"}, "city": {"type": "string"}},
         "required": ["city"], "$defs": {"unit": {"enum": ["C", "F"]}}})"},
    {"now", ""},
};

TEST(ForcedToolCallTest, RequiredSchemaEmbedsEachToolAndRebasesRefs) {
  const ordered_json schema = ordered_json::parse(RequiredToolCallSchema(kTools).value());
  EXPECT_EQ(schema["type"], "array");
  EXPECT_EQ(schema["minItems"], 1);
  const ordered_json& items = schema["items"]["anyOf"];
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0]["properties"]["name"]["const"], "get_weather");
  const ordered_json& params = items[0]["properties"]["parameters"];
  EXPECT_EQ(params["properties"]["unit"]["$ref"],
            "#/items/anyOf/0/properties/parameters/$defs/unit");
  EXPECT_EQ(params["properties"].begin().key(), "unit");  // the tool's property order is kept
  EXPECT_EQ(items[1]["properties"]["parameters"], ordered_json::parse(R"({"type": "object",
            "properties": {}})"));
  EXPECT_EQ(items[0]["properties"].begin().key(), "name");  // name first: calls open early
}

// The schemas go to the structured-output compiler; it must take them.
TEST(ForcedToolCallTest, SchemasCompileToGrammars) {
  const auto required = structured::CompileJsonSchema(RequiredToolCallSchema(kTools).value());
  EXPECT_TRUE(required.ok()) << required.status();
  for (const ToolSpec& tool : kTools) {
    const auto named =
        structured::CompileJsonSchema(NamedToolCallSchema(kTools, tool.name).value());
    EXPECT_TRUE(named.ok()) << tool.name << ": " << named.status();
  }
}

TEST(ForcedToolCallTest, BadToolsNameTheField) {
  EXPECT_EQ(RequiredToolCallSchema({}).status().message(),
            "tools: tool_choice \"required\" needs at least one tool");
  EXPECT_EQ(RequiredToolCallSchema({{"", ""}}).status().message(), "tools[0].function.name: empty");
  EXPECT_EQ(RequiredToolCallSchema({{"f", ""}, {"f", ""}}).status().message(),
            "tools[1].function.name: \"f\" appears twice");
  EXPECT_EQ(RequiredToolCallSchema({{"f", ""}, {"g", "[1]"}}).status().message(),
            "tools[1].function.parameters: not a JSON object (a JSON Schema)");
  EXPECT_EQ(NamedToolCallSchema({{"f", "{"}}, "f").status().message(),
            "tools[0].function.parameters: not a JSON object (a JSON Schema)");
  const absl::Status unknown = NamedToolCallSchema(kTools, "get_time").status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(unknown.message(), "tool_choice.function.name: \"get_time\" is not one of the tools");
}

TEST(ForcedToolCallTest, NamedSchemaIsTheParametersAsWritten) {
  EXPECT_EQ(NamedToolCallSchema(kTools, "get_weather").value(), kTools[0].parameters);
  EXPECT_EQ(ordered_json::parse(NamedToolCallSchema(kTools, "now").value()),
            ordered_json::parse(R"({"type": "object", "properties": {}})"));
}

struct Case {
  std::string output, content;
  std::vector<std::pair<std::string, std::string>> calls;
};

TEST(ForcedToolCallTest, RequiredOutputsParseAndStreamAlike) {
  const std::vector<Case> cases = {
      {R"([{"name":"get_weather","parameters":{"unit":"C","city":"Zürich \"}"}},{"name":"now","parameters":{}}])",
       "",
       {{"get_weather", R"({"unit":"C","city":"Zürich \"}"})"}, {"now", "{}"}}},
      {"[\n  {\"name\": \"now\", \"parameters\": {}}\n]\n", "", {{"now", "{}"}}},
      {R"([{"name":"now","parameters":{"a":[1,{"b":"]"}]}}, 5])",
       ", 5]",
       {{"now", R"({"a":[1,{"b":"]"}]})"}}},
      {R"([{"name":"now","parameters":{"a":"cut)", "", {{"now", R"({"a":"cut)"}}},
      {"[{\"name\": \"now\", \"parameters\": {}}] and text", " and text", {{"now", "{}"}}},
      {"not json", "not json", {}},
      {R"([{"parameters": {}}])", R"([{"parameters": {}}])", {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.output);
    const ParsedOutput whole = MakeRequiredToolCallParser(4, CallIdStyle::kOpenAi)->Parse(c.output);
    EXPECT_EQ(whole.content, c.content);
    ASSERT_EQ(whole.calls.size(), c.calls.size());
    for (size_t i = 0; i < c.calls.size(); ++i) {
      EXPECT_EQ(whole.calls[i].name, c.calls[i].first);
      EXPECT_EQ(whole.calls[i].arguments, c.calls[i].second);
    }
    for (const testing::Chunks& chunks : testing::AllSplits(c.output, 100)) {
      auto parser = MakeRequiredToolCallParser(4, CallIdStyle::kOpenAi);
      testing::ExpectSameParse(testing::StreamTools(*parser, chunks), whole);
      if (HasFailure()) return;
    }
  }
}

TEST(ForcedToolCallTest, NamedOutputIsTheArguments) {
  const std::string output = R"({"city": "東京", "unit": "C"})";
  const ParsedOutput whole =
      MakeNamedToolCallParser("get_weather", 4, CallIdStyle::kMistral)->Parse(output);
  ASSERT_EQ(whole.calls.size(), 1u);
  EXPECT_EQ(whole.calls[0].name, "get_weather");
  EXPECT_EQ(whole.calls[0].arguments, output);
  EXPECT_EQ(whole.calls[0].id.size(), 9u);
  EXPECT_EQ(whole.content, "");
  for (const testing::Chunks& chunks : testing::AllSplits(output, 100)) {
    auto parser = MakeNamedToolCallParser("get_weather", 4, CallIdStyle::kMistral);
    testing::ExpectSameParse(testing::StreamTools(*parser, chunks), whole);
  }
  const ParsedOutput empty = MakeNamedToolCallParser("f", 4, CallIdStyle::kOpenAi)->Parse("");
  ASSERT_EQ(empty.calls.size(), 1u);  // the call is there even when the output was cut at once
  EXPECT_EQ(empty.calls[0].arguments, "");
}

}  // namespace
}  // namespace muse::chat
