// The tri-modal MuseForConditionalGeneration directory (models/muse): the composite config parses
// (errors name the key), and its three parts load through the single-modality loaders unchanged,
// each giving exactly what the LLaVA / Qwen2-Audio checkpoint of the same seed gives.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "models/llava/image_encoder.h"
#include "models/llava/llava_config.h"
#include "models/muse/muse_config.h"
#include "models/qwen2_audio/audio_encoder.h"
#include "models/testing/presets.h"
#include "models/testing/random_llava_checkpoint.h"
#include "models/testing/random_muse_checkpoint.h"
#include "models/testing/random_qwen2_audio_checkpoint.h"
#include "src/common/file_util.h"
#include "src/vision/preprocess.h"

namespace muse::models::muse_composite {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
constexpr uint64_t kSeed = 3;

ModelConfig Decoder() {
  auto d = DecoderPreset("tiny");
  EXPECT_TRUE(d.ok());
  d->vocab_size = 500;  // small: the test writes three checkpoints
  d->bos_token_id = 1;
  d->eos_token_ids = {2};
  return *d;
}

std::string TempDir(const std::string& name) {
  const std::string dir =
      absl::StrCat(testing::TempDir(), "/muse_model_test_", getpid(), "_", name);
  fs::remove_all(dir);
  return dir;
}

struct Dirs {
  std::string muse, llava, qwen;
  MuseConfig config;
};

const Dirs& TinyDirs() {
  static const Dirs* d = [] {
    auto* out = new Dirs{TempDir("muse"), TempDir("llava"), TempDir("qwen")};
    auto c = MusePreset("muse-tiny", Decoder());
    EXPECT_TRUE(c.ok()) << c.status();
    out->config = *c;
    const auto pre = llava::PreprocessorFor(c->vision);
    EXPECT_TRUE(WriteRandomMuseCheckpoint(out->muse, *c, pre, {kSeed}).ok());
    EXPECT_TRUE(llava::WriteRandomLlavaCheckpoint(out->llava, c->vision, pre, {kSeed}).ok());
    qwen2_audio::Qwen2AudioConfig q = c->audio;
    q.weight_prefix.clear();
    EXPECT_TRUE(qwen2_audio::WriteRandomQwen2AudioCheckpoint(out->qwen, q, {kSeed}).ok());
    return out;
  }();
  return *d;
}

TEST(MuseConfigTest, RoundTripsAndEachSideParses) {
  const Dirs& d = TinyDirs();
  ASSERT_TRUE(IsMuseModelDir(d.muse));
  EXPECT_FALSE(IsMuseModelDir(d.llava));
  EXPECT_TRUE(llava::IsLlavaModelDir(d.muse));
  EXPECT_TRUE(qwen2_audio::IsQwen2AudioModelDir(d.muse));
  auto c = LoadMuseConfig(d.muse);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vision.image_token_index, 498);
  EXPECT_EQ(c->audio.audio_token_index, 499);
  EXPECT_EQ(c->audio.weight_prefix, "audio.");
  EXPECT_EQ(c->audio.audio.d_model, 64);
  EXPECT_EQ(c->audio.audio.num_mel_bins, 80);
  EXPECT_EQ(c->vision.vision.image_size, 32);
  EXPECT_EQ(ModelConfigToJson(c->vision.text), ModelConfigToJson(c->audio.text));
  EXPECT_EQ(MuseConfigToJson(*c), *muse::ReadFile(d.muse + "/config.json"));
  // The shared preprocessor_config.json feeds both processors.
  auto pre = vision::LoadPreprocessorConfig(d.muse);
  ASSERT_TRUE(pre.ok()) << pre.status();
  EXPECT_EQ(pre->crop_height, 32);
  auto feat = LoadAudioFeatureConfig(d.muse);
  ASSERT_TRUE(feat.ok()) << feat.status();
  EXPECT_EQ(feat->feature_size, 80);
  EXPECT_EQ(feat->nb_max_frames(), 3000);
  EXPECT_FALSE(feat->do_normalize);  // the image processor's do_normalize is not the extractor's
  auto qfeat = LoadAudioFeatureConfig(d.qwen);
  ASSERT_TRUE(qfeat.ok()) << qfeat.status();
  EXPECT_EQ(qfeat->feature_size, 80);
}

TEST(MuseConfigTest, ErrorsNameTheKey) {
  const json good = json::parse(*muse::ReadFile(TinyDirs().muse + "/config.json"));
  ASSERT_TRUE(ParseMuseConfig(good.dump()).ok());
  const std::vector<std::pair<std::function<void(json&)>, std::string>> cases = {
      {[](json& j) { j["architectures"] = {"LlavaForConditionalGeneration"}; }, "'architectures'"},
      {[](json& j) { j.erase("audio_config"); }, "'audio_config' is required"},
      {[](json& j) { j.erase("vision_config"); }, "'vision_config' is required"},
      {[](json& j) { j.erase("text_config"); }, "'text_config' is required"},
      {[](json& j) { j["audio_config"] = 3; }, "'audio_config' must be an object"},
      {[](json& j) { j.erase("audio_token_index"); }, "'audio_token_index' is required"},
      {[](json& j) { j.erase("image_token_index"); }, "'image_token_index' is required"},
      {[](json& j) { j["audio_token_index"] = j["image_token_index"]; },
       "'audio_token_index' (498) must differ"},
      {[](json& j) { j["audio_token_index"] = 500; }, "'audio_token_index' (500) must be a token"},
      {[](json& j) { j["audio_config"]["d_model"] = 0; },
       "'audio_config.d_model' must be positive"},
      {[](json& j) { j["audio_config"]["encoder_attention_heads"] = 5; }, "'audio_config.d_model'"},
      {[](json& j) { j["vision_config"]["patch_size"] = "8"; },
       "'vision_config.patch_size' must be an integer"},
      {[](json& j) { j["text_config"]["model_type"] = "gpt2"; }, "model_type"},
  };
  for (const auto& [mutate, want] : cases) {
    json j = good;
    mutate(j);
    auto c = ParseMuseConfig(j.dump());
    ASSERT_FALSE(c.ok()) << want;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(c.status().message()).find(want), std::string::npos)
        << c.status().message() << " (want " << want << ")";
  }
  EXPECT_FALSE(ParseMuseConfig("{").ok());
  EXPECT_FALSE(ParseMuseConfig("[]").ok());
  EXPECT_FALSE(LoadMuseConfig("/nonexistent").ok());
}

TEST(MuseModelTest, ImageSideEqualsTheLlavaCheckpoint) {
  const Dirs& d = TinyDirs();
  auto a = llava::CreateImageEncoder(d.muse, {});
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = llava::CreateImageEncoder(d.llava, {});
  ASSERT_TRUE(b.ok()) << b.status();
  std::mt19937 rng(5);
  std::normal_distribution<float> n;
  vision::PixelValues px{32, 32, std::vector<float>(3 * 32 * 32)};
  for (float& x : px.data) x = n(rng);
  auto ea = (*a)->EncodeBatch({&px});
  auto eb = (*b)->EncodeBatch({&px});
  ASSERT_TRUE(ea.ok() && eb.ok());
  ASSERT_EQ((*ea)[0].size(), size_t{16} * 64);
  EXPECT_EQ((*ea)[0], (*eb)[0]);
  // And the decoder opens from the composite as from the LLaVA directory.
  auto dec = llava::OpenDecoderCheckpoint(d.muse);
  ASSERT_TRUE(dec.ok()) << dec.status();
  EXPECT_EQ(dec->weight_prefix, "language_model.");
}

TEST(MuseModelTest, AudioSideEqualsTheQwen2AudioCheckpoint) {
  const Dirs& d = TinyDirs();
  auto a = qwen2_audio::CreateAudioEncoder(d.muse, {});
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = qwen2_audio::CreateAudioEncoder(d.qwen, {});
  ASSERT_TRUE(b.ok()) << b.status();
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(-1.0f, 1.5f);
  audio::LogMel mel{80, 3000, 401, std::vector<float>(80 * 3000)};
  for (float& x : mel.data) x = u(rng);
  auto ea = (*a)->Encode(mel);
  auto eb = (*b)->Encode(mel);
  ASSERT_TRUE(ea.ok()) << ea.status();
  ASSERT_TRUE(eb.ok()) << eb.status();
  EXPECT_EQ(ea->size(), static_cast<size_t>(qwen2_audio::Qwen2AudioConfig::NumAudioTokens(401)) *
                            d.config.vision.text.hidden_size);
  EXPECT_EQ(*ea, *eb);
}

TEST(MuseModelTest, MissingAudioTensorIsNamed) {
  const Dirs& d = TinyDirs();
  // A Muse config over the LLaVA directory's weights: the audio tower is absent.
  const std::string dir = TempDir("no_audio");
  fs::create_directories(dir);
  fs::copy_file(d.llava + "/model.safetensors", dir + "/model.safetensors");
  fs::copy_file(d.muse + "/config.json", dir + "/config.json");
  auto e = qwen2_audio::CreateAudioEncoder(dir, {});
  ASSERT_FALSE(e.ok());
  EXPECT_NE(std::string(e.status().message()).find("audio.audio_tower."), std::string::npos)
      << e.status();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace muse::models::muse_composite
