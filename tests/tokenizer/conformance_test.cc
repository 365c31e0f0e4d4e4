// Every corpus string, every tokenizer: our ids and decodes must equal HF tokenizers' (Rust
// binding). The reference JSON comes from make_reference.mjs (ctest fixture tokenizer_reference).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "src/common/file_util.h"
#include "src/tokenizer/tokenizer.h"

namespace muse::tokenizer {
namespace {

std::string g_reference_path;

const nlohmann::json& Reference() {
  static const nlohmann::json* ref = [] {
    auto j = muse::ParseJsonFile(g_reference_path);
    if (!j.ok()) std::fprintf(stderr, "%s\n", j.status().ToString().c_str());
    return new nlohmann::json(j.ok() ? *std::move(j)
                                     : nlohmann::json(nlohmann::json::value_t::discarded));
  }();
  return *ref;
}

std::string Escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s.substr(0, 120)) {
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string Ids(const std::vector<int32_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < 40; ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

class ConformanceTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ConformanceTest, MatchesReferenceOnEveryString) {
  const nlohmann::json& ref = Reference();
  ASSERT_FALSE(ref.is_discarded()) << "cannot read reference " << g_reference_path;
  const auto& m = ref["models"][GetParam()];
  ASSERT_TRUE(m.is_object()) << GetParam() << " missing from the reference";
  auto tok = Tokenizer::FromDirectory(m["dir"].get<std::string>());
  ASSERT_TRUE(tok.ok()) << tok.status();
  const auto& corpus = ref["corpus"];
  ASSERT_GE(corpus.size(), 2000u);

  size_t enc_bad = 0, enc_ns_bad = 0, dec_bad = 0, dec_skip_bad = 0;
  for (size_t i = 0; i < corpus.size(); ++i) {
    const std::string s = corpus[i].get<std::string>();
    const auto want = m["ids"][i].get<std::vector<int32_t>>();
    const auto want_ns = m["ids_no_special"][i].get<std::vector<int32_t>>();
    auto got = (*tok)->Encode(s, true);
    ASSERT_TRUE(got.ok()) << got.status();
    if (*got != want && ++enc_bad <= 5) {
      ADD_FAILURE() << GetParam() << " encode #" << i << " '" << Escape(s) << "'\n  want "
                    << Ids(want) << "\n  got  " << Ids(*got);
    }
    auto got_ns = (*tok)->Encode(s, false);
    ASSERT_TRUE(got_ns.ok()) << got_ns.status();
    if (*got_ns != want_ns && ++enc_ns_bad <= 5) {
      ADD_FAILURE() << GetParam() << " encode(no special) #" << i << " '" << Escape(s) << "'";
    }
    auto dec = (*tok)->Decode(*got, false);
    ASSERT_TRUE(dec.ok()) << dec.status();
    if (*dec != m["decoded"][i].get<std::string>() && ++dec_bad <= 5) {
      ADD_FAILURE() << GetParam() << " decode #" << i << " '" << Escape(s) << "'\n  want '"
                    << Escape(m["decoded"][i].get<std::string>()) << "'\n  got  '" << Escape(*dec)
                    << "'";
    }
    auto dec_skip = (*tok)->Decode(*got, true);
    ASSERT_TRUE(dec_skip.ok()) << dec_skip.status();
    if (*dec_skip != m["decoded_skip"][i].get<std::string>() && ++dec_skip_bad <= 5) {
      ADD_FAILURE() << GetParam() << " decode(skip special) #" << i << " '" << Escape(s) << "'";
    }
  }
  EXPECT_EQ(enc_bad, 0u) << GetParam() << ": encode mismatches out of " << corpus.size();
  EXPECT_EQ(enc_ns_bad, 0u) << GetParam() << ": encode(no special) mismatches";
  EXPECT_EQ(dec_bad, 0u) << GetParam() << ": decode mismatches";
  EXPECT_EQ(dec_skip_bad, 0u) << GetParam() << ": decode(skip special) mismatches";
  std::printf("[ conformance ] %s: %zu strings, encode mismatches %zu, decode mismatches %zu\n",
              GetParam().c_str(), corpus.size(), enc_bad + enc_ns_bad, dec_bad + dec_skip_bad);
}

// Batch encoding over the thread pool gives the same ids as one-at-a-time.
TEST_P(ConformanceTest, BatchMatchesReference) {
  const nlohmann::json& ref = Reference();
  ASSERT_FALSE(ref.is_discarded());
  const auto& m = ref["models"][GetParam()];
  auto tok = Tokenizer::FromDirectory(m["dir"].get<std::string>());
  ASSERT_TRUE(tok.ok()) << tok.status();
  const auto texts = ref["corpus"].get<std::vector<std::string>>();
  auto got = (*tok)->EncodeBatch(texts, true, 4);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), texts.size());
  size_t bad = 0;
  for (size_t i = 0; i < texts.size(); ++i)
    bad += (*got)[i] != m["ids"][i].get<std::vector<int32_t>>();
  EXPECT_EQ(bad, 0u);
}

INSTANTIATE_TEST_SUITE_P(Models, ConformanceTest,
                         ::testing::Values("llama3", "qwen3", "llama2", "gemma3",
                                           "llama2_metaspace_first", "llama2_metaspace_split",
                                           "llama3_added_flags", "qwen3_normalized_added"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace muse::tokenizer

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--reference=", 12) == 0)
      muse::tokenizer::g_reference_path = argv[i] + 12;
  }
  if (muse::tokenizer::g_reference_path.empty()) {
    std::fprintf(stderr,
                 "usage: tokenizer_conformance_test --reference=tokenizer_reference.json\n");
    return 2;
  }
  return RUN_ALL_TESTS();
}
