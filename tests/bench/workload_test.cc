#include "benchmarks/bench/workload.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <set>

#include "absl/strings/str_split.h"
#include "src/common/image_encode.h"
#ifdef MUSE_BENCH_HAVE_VISION
#include "src/vision/image.h"
#endif

namespace muse::bench {
namespace {

const ModelFacts kFacts{1000, 4096, true};

TEST(RandomWorkload, ExactLengthsWithoutRange) {
  WorkloadConfig c;
  c.random_input_len = 100;
  c.random_output_len = 50;
  auto w = Workload::Create(c, kFacts, nullptr);
  ASSERT_TRUE(w.ok()) << w.status();
  for (int i = 0; i < 20; ++i) {
    BenchRequest r = (*w)->Make(i);
    EXPECT_EQ(r.prompt_ids.size(), 100u);
    EXPECT_EQ(r.expected_prompt_tokens, 100);
    EXPECT_EQ(r.max_tokens, 50);
    EXPECT_TRUE(r.ignore_eos);
    for (int32_t t : r.prompt_ids) ASSERT_TRUE(t >= 0 && t < 1000);
  }
  EXPECT_NE((*w)->Make(0).prompt_ids, (*w)->Make(1).prompt_ids);
}

// The image and audio placeholder tokens need an image / a clip (the server refuses a placeholder
// without one): random prompts (and the shared prefix) skip them.
TEST(RandomWorkload, NeverDrawsTheMediaPlaceholders) {
  WorkloadConfig c;
  c.random_input_len = 200;
  c.random_output_len = 4;
  c.random_prefix_len = 50;
  const ModelFacts facts{5, 4096, true, /*image_token_id=*/2, /*audio_token_id=*/4};
  auto w = Workload::Create(c, facts, nullptr);
  ASSERT_TRUE(w.ok()) << w.status();
  int seen[5] = {0, 0, 0, 0, 0};
  for (int i = 0; i < 20; ++i) {
    for (int32_t t : (*w)->Make(i).prompt_ids) ++seen[t];
  }
  EXPECT_EQ(seen[2], 0);
  EXPECT_EQ(seen[4], 0);
  EXPECT_GT(seen[0], 0);
  EXPECT_GT(seen[1], 0);
  EXPECT_GT(seen[3], 0);
}

TEST(RandomWorkload, RangesPrefixAndDeterminism) {
  WorkloadConfig c;
  c.seed = 11;
  c.random_input_len = 100;
  c.random_output_len = 50;
  c.random_range_ratio = 0.5;
  c.random_prefix_len = 16;
  auto w = Workload::Create(c, kFacts, nullptr);
  auto w2 = Workload::Create(c, kFacts, nullptr);
  c.seed = 12;
  auto w3 = Workload::Create(c, kFacts, nullptr);
  ASSERT_TRUE(w.ok() && w2.ok() && w3.ok());
  std::set<size_t> in_lens;
  std::set<int64_t> out_lens;
  const std::vector<int32_t> first = (*w)->Make(0).prompt_ids;
  const std::vector<int32_t> prefix(first.begin(), first.begin() + 16);
  for (int i = 0; i < 500; ++i) {
    BenchRequest r = (*w)->Make(i);
    EXPECT_GE(r.prompt_ids.size(), 16u + 50);
    EXPECT_LE(r.prompt_ids.size(), 16u + 150);
    EXPECT_GE(r.max_tokens, 25);
    EXPECT_LE(r.max_tokens, 75);
    EXPECT_TRUE(std::equal(prefix.begin(), prefix.end(), r.prompt_ids.begin()));
    in_lens.insert(r.prompt_ids.size());
    out_lens.insert(r.max_tokens);
    EXPECT_EQ(r.prompt_ids, (*w2)->Make(i).prompt_ids);
    EXPECT_EQ(r.max_tokens, (*w2)->Make(i).max_tokens);
  }
  EXPECT_GT(in_lens.size(), 50u);  // lengths really vary
  EXPECT_GT(out_lens.size(), 25u);
  EXPECT_NE((*w)->Make(0).prompt_ids, (*w3)->Make(0).prompt_ids);
}

TEST(Workload, PriorityMixProportions) {
  WorkloadConfig c;
  c.random_input_len = 4;
  auto mix = ParsePriorityMix("interactive:0.7,batch:0.3");
  ASSERT_TRUE(mix.ok());
  c.priority_mix = *mix;
  auto w = Workload::Create(c, kFacts, nullptr);
  ASSERT_TRUE(w.ok());
  int interactive = 0;
  const int n = 10000;
  for (int i = 0; i < n; ++i) interactive += (*w)->Make(i).priority == "interactive";
  EXPECT_NEAR(interactive / double(n), 0.7, 0.02);
  EXPECT_FALSE(ParsePriorityMix("urgent:1").ok());
}

TEST(ImageWorkload, RepeatRatioAndIdenticalBytes) {
  WorkloadConfig c;
  c.kind = WorkloadKind::kImage;
  c.image_repeat_ratio = 0.5;
  c.image_sizes = *ParseImageSizes("32x24,16x16");
  c.random_output_len = 8;
  auto w = Workload::Create(c, kFacts, nullptr);
  ASSERT_TRUE(w.ok());
  std::map<int64_t, std::string> by_key;
  int repeats = 0;
  const int n = 600;
  for (int i = 0; i < n; ++i) {
    BenchRequest r = (*w)->Make(i);
    ASSERT_LE(r.image_key, i);
    repeats += r.image_key != i;
    auto [it, fresh] = by_key.emplace(r.image_key, r.image_png);
    if (!fresh) {
      EXPECT_EQ(it->second, r.image_png) << "key " << r.image_key;
    }
    EXPECT_EQ(r.max_tokens, 8);
  }
  EXPECT_NEAR(repeats / double(n), 0.5, 0.07);
  EXPECT_NE(by_key.at(0), by_key.at((*w)->Make(1).image_key == 0 ? 2 : 1));
}

TEST(Png, StructureAndDecode) {
  std::vector<uint8_t> rgb(7 * 5 * 3);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 37 + 11);
  const std::string png = EncodePng(rgb, 7, 5, 3, kPngStored);
  ASSERT_GT(png.size(), 8u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
#ifdef MUSE_BENCH_HAVE_VISION
  auto img = vision::DecodeImage(png);
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(img->width, 7);
  EXPECT_EQ(img->height, 5);
  EXPECT_EQ(img->rgb, rgb);
  // Larger than one 64 KiB stored block, and as large as its pixels (the payload size muse-bench
  // sends).
  const std::string big_png = SyntheticPng(300, 200, 5);
  EXPECT_GT(big_png.size(), 300u * 200 * 3);
  auto big = vision::DecodeImage(big_png);
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_EQ(big->width, 300);
#endif
}

TEST(ShareGptWorkload, FiltersShufflesAndCountsTokens) {
  const std::string path = ::testing::TempDir() + "/sharegpt_test.json";
  {
    std::ofstream f(path);
    f << R"([
      {"id": "a", "conversations": [{"from": "human", "value": "one two three four five"},
                                    {"from": "gpt", "value": "a b c d e f"}]},
      {"id": "short", "conversations": [{"from": "human", "value": "hi"},
                                        {"from": "gpt", "value": "a b c d e"}]},
      {"id": "single", "conversations": [{"from": "human", "value": "w x y z q"}]},
      {"id": "b", "conversations": [{"from": "human", "value": "p q r s t u v"},
                                    {"from": "gpt", "value": "1 2 3 4"}]},
      {"id": "c", "conversations": [{"from": "human", "value": "k l m n"},
                                    {"from": "gpt", "value": "x y z w v u t s"}]}
    ])";
  }
  TokenizeFn words = [](const std::string& s) -> absl::StatusOr<std::vector<int32_t>> {
    std::vector<std::string> w = absl::StrSplit(s, ' ', absl::SkipEmpty());
    return std::vector<int32_t>(w.size(), 1);
  };
  WorkloadConfig c;
  c.kind = WorkloadKind::kShareGpt;
  c.dataset_path = path;
  c.seed = 5;
  auto w = Workload::Create(c, kFacts, words);
  ASSERT_TRUE(w.ok()) << w.status();
  std::map<std::string, int64_t> out_by_prompt;
  for (int i = 0; i < 3; ++i) {
    BenchRequest r = (*w)->Make(i);
    out_by_prompt[r.prompt_text] = r.max_tokens;
    EXPECT_FALSE(r.ignore_eos);
    EXPECT_EQ((*w)->Make(i + 3).prompt_text, r.prompt_text);  // cycles
  }
  // "hi" (< 4 tokens) and the single-turn conversation are dropped.
  ASSERT_EQ(out_by_prompt.size(), 3u);
  EXPECT_EQ(out_by_prompt.at("one two three four five"), 6);
  EXPECT_EQ(out_by_prompt.at("p q r s t u v"), 4);
  EXPECT_EQ(out_by_prompt.at("k l m n"), 8);
  // Same seed, same order; a fixed output length overrides the reply's.
  auto again = Workload::Create(c, kFacts, words);
  for (int i = 0; i < 3; ++i) EXPECT_EQ((*again)->Make(i).prompt_text, (*w)->Make(i).prompt_text);
  c.sharegpt_output_len = 17;
  auto fixed = Workload::Create(c, kFacts, words);
  ASSERT_TRUE(fixed.ok());
  EXPECT_EQ((*fixed)->Make(0).max_tokens, 17);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace muse::bench
