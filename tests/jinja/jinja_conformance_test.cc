// Byte-for-byte conformance with @huggingface/jinja: render_reference.mjs (run first by ctest,
// fixture jinja_reference) renders every template x conversation; this test renders the same
// contexts and compares. Reference errors must be errors here too (raise_exception messages
// verbatim).
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "src/common/file_util.h"
#include "src/tokenizer/jinja/chat_template.h"
#include "src/tokenizer/jinja/tokenizer_config.h"

namespace muse::jinja {
namespace {

using Json = nlohmann::ordered_json;

// ordered_json: dict iteration in templates follows the file's key order, as in JavaScript.
absl::StatusOr<Json> LoadReference() {
  ASSIGN_OR_RETURN(std::string text, muse::ReadFile(MUSE_JINJA_REFERENCE_JSON));
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    return absl::InvalidArgumentError(absl::StrCat(MUSE_JINJA_REFERENCE_JSON, ": not valid JSON"));
  return j;
}

std::string Quote(const std::string& s) {
  return Json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string FirstDifference(const std::string& got, const std::string& want) {
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  const size_t from = i > 40 ? i - 40 : 0;
  return "first difference at byte " + std::to_string(i) + "\n  got:  ..." +
         Quote(got.substr(from, 120)) + "\n  want: ..." + Quote(want.substr(from, 120));
}

class ConformanceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto r = LoadReference();
    load_status_ = new absl::Status(r.status());
    reference_ = new Json(r.ok() ? *std::move(r) : Json());
  }
  static void TearDownTestSuite() {
    delete reference_;
    delete load_status_;
  }
  static Json* reference_;
  static absl::Status* load_status_;
};
Json* ConformanceTest::reference_ = nullptr;
absl::Status* ConformanceTest::load_status_ = nullptr;

TEST_F(ConformanceTest, EveryTemplateEveryConversation) {
  ASSERT_TRUE(load_status_->ok() && reference_->is_object())
      << *load_status_ << " (run: ctest -R jinja_reference_render)";
  std::map<std::string, ChatTemplate> templates;
  for (const auto& t : (*reference_)["templates"]) {
    const std::string name = t["name"].get<std::string>();
    std::string source;
    if (t.contains("tokenizer_config")) {
      // Real configs go through the loader, which must agree with what node read.
      auto config = LoadTokenizerConfig(t["tokenizer_config"].get<std::string>());
      ASSERT_TRUE(config.ok()) << config.status();
      if (t["bos_token"].is_string())
        EXPECT_EQ(config->bos_token, t["bos_token"].get<std::string>()) << name;
      if (t["eos_token"].is_string())
        EXPECT_EQ(config->eos_token, t["eos_token"].get<std::string>()) << name;
      auto selected = config->SelectTemplate();
      if (t["source"].is_null()) {
        EXPECT_FALSE(selected.ok()) << name << " has no chat_template";
        continue;
      }
      ASSERT_TRUE(selected.ok()) << name << ": " << selected.status();
      source = *selected;
    } else {
      source = t["source"].get<std::string>();
    }
    EXPECT_EQ(source, t["source"].get<std::string>()) << name;
    auto parsed = ChatTemplate::Parse(source);
    ASSERT_TRUE(parsed.ok()) << name << ": " << parsed.status();
    templates.emplace(name, *std::move(parsed));
  }

  std::map<std::string, std::pair<int, int>> per_template;  // passed, total
  int failures = 0;
  for (const auto& c : (*reference_)["cases"]) {
    const std::string name = c["name"].get<std::string>();
    const std::string template_name = c["template"].get<std::string>();
    auto& [passed, total] = per_template[template_name];
    ++total;
    auto it = templates.find(template_name);
    ASSERT_NE(it, templates.end()) << name;
    const absl::StatusOr<std::string> got = it->second.Render(c["context"]);
    bool ok = false;
    if (c.contains("expected")) {
      const std::string want = c["expected"].get<std::string>();
      if (!got.ok()) {
        ADD_FAILURE() << name << ": reference rendered, we failed: " << got.status();
      } else if (*got != want) {
        ADD_FAILURE() << name << ": output differs, " << FirstDifference(*got, want);
      } else {
        ok = true;
      }
    } else {
      const std::string want_error = c["error"].get<std::string>();
      const std::string message = got.ok() ? "" : std::string(got.status().message());
      if (got.ok()) {
        ADD_FAILURE() << name << ": reference failed (" << want_error << "), we rendered "
                      << Json(*got).dump();
      } else if (message.rfind("jinja: ", 0) != 0 && message != want_error) {
        // A raise_exception() message must be the template's own text.
        ADD_FAILURE() << name << ": raise_exception message differs: got '" << message
                      << "', want '" << want_error << "'";
      } else if (message.find(want_error) == std::string::npos) {
        ADD_FAILURE() << name << ": error differs: got '" << message << "', want '" << want_error
                      << "'";
      } else {
        ok = true;
      }
    }
    if (ok) {
      ++passed;
    } else {
      ++failures;
    }
  }
  for (const auto& [name, counts] : per_template) {
    std::printf("[conformance] %-14s %3d / %3d identical\n", name.c_str(), counts.first,
                counts.second);
  }
  EXPECT_EQ(failures, 0);
  EXPECT_GT((*reference_)["cases"].size(), 100u);
}

}  // namespace
}  // namespace muse::jinja

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
