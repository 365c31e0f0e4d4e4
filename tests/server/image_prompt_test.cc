// Image placeholder expansion (server) and the embedding rows the engine builds from its spans.
#include "src/server/image_prompt.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "src/engine/batch_builder.h"
#include "tests/common/status_matchers.h"
#include "tests/vision/test_embeddings.h"

namespace muse::server {
namespace {

using vision::ImageEmbedding;

ImageEmbedding Emb(uint8_t id, int rows, int hidden) {
  return muse::testing::TestEmbedding(id, rows, hidden);
}

TEST(ImagePromptTest, ExpandsPlaceholdersInOrder) {
  const int32_t kImg = 99, hidden = 4;
  std::vector<ImageEmbedding> images = {Emb(1, 3, hidden), Emb(2, 2, hidden)};
  auto p = ExpandImagePlaceholders({1, kImg, 5, 6, kImg, 7}, kImg, images, hidden);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->token_ids, (std::vector<int32_t>{1, kImg, kImg, kImg, 5, 6, kImg, kImg, 7}));
  ASSERT_EQ(p->content.size(), 2u);
  EXPECT_EQ(p->content[0].offset, 1);
  EXPECT_EQ(p->content[0].num_tokens, 3);
  EXPECT_EQ(p->content[1].offset, 6);
  EXPECT_EQ(p->content[1].num_tokens, 2);
  EXPECT_EQ(p->content[0].digest, images[0].digest.key64());
  EXPECT_NE(p->content[0].digest, p->content[1].digest);

  // A chunk [2, 7) of the context placed at batch index 10: rows 1..2 of image 0, all of image 1.
  auto ov = engine::EmbeddingOverridesFor(p->content, 2, 5, 10);
  ASSERT_EQ(ov.size(), 2u);
  EXPECT_EQ(ov[0].token_index, 10);
  EXPECT_EQ(ov[0].num_rows, 2);
  EXPECT_EQ(ov[0].data, p->content[0].embeddings->data() + hidden);
  EXPECT_EQ(ov[1].token_index, 14);
  EXPECT_EQ(ov[1].num_rows, 1);
  EXPECT_TRUE(engine::EmbeddingOverridesFor(p->content, 8, 1, 0).empty());
}

TEST(ImagePromptTest, MismatchesAreErrorsNamingTheField) {
  std::vector<ImageEmbedding> one = {Emb(1, 3, 4)};
  EXPECT_INVALID(
      ExpandImagePlaceholders({1, 2}, 99, one, 4),
      "images: the prompt has 0 image placeholder(s) (token id 99) but the request has 1 image(s)");
  EXPECT_INVALID(ExpandImagePlaceholders({99, 99}, 99, one, 4), "has 2 image placeholder(s)");
  EXPECT_INVALID(ExpandImagePlaceholders({99}, 99, one, 8),
                 "images[0].hidden_size: 4 != model hidden size 8");
  ImageEmbedding bad = Emb(1, 3, 4);
  bad.num_tokens = 5;
  EXPECT_INVALID(ExpandImagePlaceholders({99}, 99, {bad}, 4), "images[0].data");
}

}  // namespace
}  // namespace muse::server
