// Qwen2-Audio's audio tower + projector (models/qwen2_audio) against an independent float64
// reference of HF's Qwen2AudioEncoder written here from elementary ATen ops (explicit conv taps,
// erf GELU, LayerNorm from mean/var, the -inf key mask over all 1500 rows, AvgPool as even/odd
// mean), on random weights (the tiny preset's checkpoint on disk) and random features; plus
// config and checkpoint errors naming the key / tensor.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/str_cat.h"
#include "models/qwen2_audio/audio_encoder.h"
#include "models/qwen2_audio/qwen2_audio_config.h"
#include "models/testing/random_qwen2_audio_checkpoint.h"
#include "src/audio/whisper_features.h"
#include "src/common/file_util.h"

namespace muse::models::qwen2_audio {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr uint64_t kSeed = 7;

ModelConfig TinyDecoder() {
  ModelConfig t;
  t.architecture = "Qwen2ForCausalLM";
  t.arch = Arch::kQwen2;
  t.vocab_size = 1000;
  t.hidden_size = 48;  // differs from d_model (64) so the projector's shape matters
  t.intermediate_size = 96;
  t.num_hidden_layers = 1;
  t.num_attention_heads = 4;
  t.num_key_value_heads = 2;
  t.head_dim = 12;
  t.max_position_embeddings = 512;
  t.eos_token_ids = {999};
  return t;
}

Qwen2AudioConfig TinyConfig() {
  auto c = Qwen2AudioPreset("qwen2-audio-tiny", TinyDecoder());
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

std::string TempDir(const std::string& name) {
  const std::string dir =
      absl::StrCat(testing::TempDir(), "/qwen2_audio_test_", getpid(), "_", name);
  fs::remove_all(dir);
  return dir;
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// ---- the reference, float64, from the HF module's definition ----

at::Tensor W(const std::string& name, std::vector<int64_t> shape) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  std::vector<float> v = RandomAudioTensorValues(name, numel, kSeed);
  return at::from_blob(v.data(), shape, at::kFloat).to(at::kDouble).clone();
}

at::Tensor Gelu(const at::Tensor& x) { return 0.5 * x * (1.0 + at::erf(x / std::sqrt(2.0))); }

at::Tensor LayerNorm(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  at::Tensor mean = x.mean(-1, true);
  at::Tensor var = (x - mean).pow(2).mean(-1, true);
  return (x - mean) / at::sqrt(var + 1e-5) * w + b;
}

// nn.Conv1d(kernel 3, padding 1, stride s) on x [C, F] as three taps: [O, (F - 1) / s + 1].
at::Tensor Conv(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, int64_t s) {
  const int64_t C = x.size(0), F = x.size(1), out = (F + 2 - 3) / s + 1;
  at::Tensor xp = at::zeros({C, F + 2}, at::kDouble);
  xp.narrow(1, 1, F).copy_(x);
  at::Tensor y = b.unsqueeze(1).repeat({1, out});
  for (int64_t k = 0; k < 3; ++k) {
    y = y + at::mm(w.select(2, k), xp.slice(1, k, k + s * (out - 1) + 1, s));
  }
  return y;
}

int64_t PyFloorDiv(int64_t a, int64_t b) {
  return static_cast<int64_t>(std::floor(static_cast<double>(a) / b));
}

// HF Qwen2AudioForConditionalGeneration's audio path for one clip: [tokens, T] float64.
at::Tensor Reference(const Qwen2AudioConfig& c, const at::Tensor& features, int64_t valid) {
  const int64_t D = c.audio.d_model, M = c.audio.num_mel_bins, F = c.audio.encoder_ffn_dim;
  const int64_t nh = c.audio.encoder_attention_heads, hd = D / nh, P = c.audio.max_source_positions;
  const int64_t T = c.text.hidden_size;
  at::Tensor x = features.to(at::kDouble);
  x = Gelu(Conv(x, W("audio_tower.conv1.weight", {D, M, 3}), W("audio_tower.conv1.bias", {D}), 1));
  x = Gelu(Conv(x, W("audio_tower.conv2.weight", {D, D, 3}), W("audio_tower.conv2.bias", {D}), 2));
  EXPECT_EQ(x.size(1), P);
  at::Tensor h = x.t() + W("audio_tower.embed_positions.weight", {P, D});  // [P, D]
  const int64_t feat_len = PyFloorDiv(valid - 1, 2) + 1;
  at::Tensor mask = at::zeros({P}, at::kDouble);
  mask.narrow(0, feat_len, P - feat_len).fill_(-INFINITY);
  for (int64_t i = 0; i < c.audio.encoder_layers; ++i) {
    const std::string l = absl::StrCat("audio_tower.layers.", i, ".");
    at::Tensor r = h;
    at::Tensor a = LayerNorm(h, W(l + "self_attn_layer_norm.weight", {D}),
                             W(l + "self_attn_layer_norm.bias", {D}));
    at::Tensor q = at::mm(a, W(l + "self_attn.q_proj.weight", {D, D}).t()) +
                   W(l + "self_attn.q_proj.bias", {D});
    at::Tensor k = at::mm(a, W(l + "self_attn.k_proj.weight", {D, D}).t());
    at::Tensor v = at::mm(a, W(l + "self_attn.v_proj.weight", {D, D}).t()) +
                   W(l + "self_attn.v_proj.bias", {D});
    at::Tensor o = at::zeros({P, D}, at::kDouble);
    for (int64_t head = 0; head < nh; ++head) {
      at::Tensor qh = q.narrow(1, head * hd, hd) * std::pow(hd, -0.5);
      at::Tensor s = at::mm(qh, k.narrow(1, head * hd, hd).t()) + mask;  // [P, P]
      at::Tensor e = at::exp(s - std::get<0>(s.max(1, true)));
      o.narrow(1, head * hd, hd).copy_(at::mm(e / e.sum(1, true), v.narrow(1, head * hd, hd)));
    }
    h = r + at::mm(o, W(l + "self_attn.out_proj.weight", {D, D}).t()) +
        W(l + "self_attn.out_proj.bias", {D});
    r = h;
    a = LayerNorm(h, W(l + "final_layer_norm.weight", {D}), W(l + "final_layer_norm.bias", {D}));
    a = Gelu(at::mm(a, W(l + "fc1.weight", {F, D}).t()) + W(l + "fc1.bias", {F}));
    h = r + at::mm(a, W(l + "fc2.weight", {D, F}).t()) + W(l + "fc2.bias", {D});
  }
  h = (h.slice(0, 0, P, 2) + h.slice(0, 1, P, 2)) / 2.0;  // AvgPool1d(2, 2): [P / 2, D]
  h = LayerNorm(h, W("audio_tower.layer_norm.weight", {D}), W("audio_tower.layer_norm.bias", {D}));
  h = at::mm(h, W("multi_modal_projector.linear.weight", {T, D}).t()) +
      W("multi_modal_projector.linear.bias", {T});
  const int64_t tokens = PyFloorDiv(feat_len - 2, 2) + 1;
  return h.narrow(0, 0, std::max<int64_t>(tokens, 0));
}

class Qwen2AudioTowerTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(TempDir("tiny"));
    auto w = WriteRandomQwen2AudioCheckpoint(*dir_, TinyConfig(), {kSeed});
    ASSERT_TRUE(w.ok()) << w.status();
    auto e = CreateAudioEncoder(*dir_, {});
    ASSERT_TRUE(e.ok()) << e.status();
    encoder_ = e->release();
  }
  static void TearDownTestSuite() {
    delete encoder_;
    fs::remove_all(*dir_);
    delete dir_;
  }

  // Encodes and compares with the reference; returns the number of rows.
  static int64_t Check(const audio::LogMel& mel) {
    auto out = encoder_->Encode(mel);
    EXPECT_TRUE(out.ok()) << out.status();
    if (!out.ok()) return -1;
    at::Tensor f =
        at::from_blob(const_cast<float*>(mel.data.data()), {mel.n_mels, mel.n_frames}, at::kFloat);
    at::Tensor ref = Reference(encoder_->config(), f, mel.valid_frames);
    const int64_t T = encoder_->hidden_size();
    EXPECT_EQ(static_cast<int64_t>(out->size()), ref.numel()) << "valid " << mel.valid_frames;
    if (static_cast<int64_t>(out->size()) != ref.numel()) return -1;
    at::Tensor got = at::from_blob(out->data(), {ref.size(0), T}, at::kFloat).to(at::kDouble);
    // Relative where magnitudes are large: |got - ref| <= 1e-5 * max(1, |ref|).
    if (ref.numel() == 0) return 0;
    const double worst = ((got - ref).abs() / at::clamp_min(ref.abs(), 1.0)).max().item<double>();
    const double scale = ref.abs().max().item<double>();
    EXPECT_LE(worst, 1e-5) << "valid " << mel.valid_frames << ", max |ref| " << scale;
    EXPECT_GT(scale, 0.1);  // the outputs are not vanishingly small
    std::fprintf(stderr, "valid_frames %d: %lld tokens, max |ref| %.3g, max error %.3g\n",
                 mel.valid_frames, static_cast<long long>(ref.size(0)), scale, worst);
    return ref.size(0);
  }

  static audio::LogMel RandomMel(int valid, int seed) {
    at::manual_seed(seed);
    audio::LogMel m;
    m.n_mels = 80;
    m.n_frames = 3000;
    m.valid_frames = valid;
    at::Tensor f = at::rand({80, 3000}, at::kFloat) * 2.5 - 1.0;  // log-mel range
    m.data.assign(f.data_ptr<float>(), f.data_ptr<float>() + f.numel());
    return m;
  }

  static std::string* dir_;
  static AudioEncoder* encoder_;
};
std::string* Qwen2AudioTowerTest::dir_ = nullptr;
AudioEncoder* Qwen2AudioTowerTest::encoder_ = nullptr;

TEST_F(Qwen2AudioTowerTest, MatchesDenseReferenceAtOddLengths) {
  // valid frames -> tokens: HF's (((v - 1) // 2 + 1) - 2) // 2 + 1.
  const std::map<int, int64_t> cases = {{3, 1}, {7, 2}, {77, 19}, {2999, 750}, {3000, 750}};
  int seed = 1;
  for (const auto& [valid, tokens] : cases) {
    EXPECT_EQ(Qwen2AudioConfig::NumAudioTokens(valid), tokens) << valid;
    EXPECT_EQ(Check(RandomMel(valid, seed++)), tokens) << valid;
  }
}

TEST_F(Qwen2AudioTowerTest, OneOrTwoFramesGiveNoTokens) {
  // HF: feat_len 1 -> (1 - 2) // 2 + 1 = 0 audio tokens.
  EXPECT_EQ(Qwen2AudioConfig::NumAudioTokens(1), 0);
  EXPECT_EQ(Qwen2AudioConfig::NumAudioTokens(2), 0);
  EXPECT_EQ(Qwen2AudioConfig::NumAudioTokens(4), 1);
  EXPECT_EQ(Qwen2AudioConfig::NumAudioTokens(1001), 250);
  EXPECT_EQ(Check(RandomMel(1, 1)), 0);
  auto two = encoder_->Encode(RandomMel(2, 2));
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_TRUE(two->empty());
}

TEST_F(Qwen2AudioTowerTest, PaddedFramesDoNotChangeTheTokens) {
  audio::LogMel a = RandomMel(501, 42), b = a;
  for (int m = 0; m < 80; ++m) {
    for (int t = 600; t < 3000; ++t) b.data[m * 3000 + t] = -3.0f;  // beyond 2 * feat_len + 1
  }
  auto ea = encoder_->Encode(a), eb = encoder_->Encode(b);
  ASSERT_TRUE(ea.ok() && eb.ok());
  EXPECT_EQ(*ea, *eb);
}

TEST_F(Qwen2AudioTowerTest, WhisperFeaturesOfATone) {
  std::vector<float> pcm(16000 * 123 / 100);  // 1.23 s: 123 valid frames -> 31 tokens
  for (size_t i = 0; i < pcm.size(); ++i) pcm[i] = 0.3f * std::sin(2 * M_PI * 440.0 * i / 16000);
  // The fixture's preprocessor_config.json is what the extractor reads.
  ASSERT_TRUE(IsQwen2AudioModelDir(*dir_));
  auto fc = audio::ParseWhisperFeatureConfig(*muse::ReadFile(*dir_ + "/preprocessor_config.json"));
  ASSERT_TRUE(fc.ok()) << fc.status();
  EXPECT_EQ(fc->feature_size, 80);
  EXPECT_EQ(fc->nb_max_frames(), 3000);
  auto mel = audio::WhisperLogMel(pcm, *fc);
  ASSERT_TRUE(mel.ok()) << mel.status();
  EXPECT_EQ(mel->valid_frames, 123);
  EXPECT_EQ(Check(*mel), 31);
}

TEST_F(Qwen2AudioTowerTest, BadFeaturesNameTheField) {
  audio::LogMel m = RandomMel(100, 3);
  audio::LogMel bad = m;
  bad.n_mels = 128;
  auto r = encoder_->Encode(bad);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("n_mels"), std::string::npos) << r.status();
  bad = m;
  bad.n_frames = 1500;
  r = encoder_->Encode(bad);
  EXPECT_NE(r.status().message().find("n_frames"), std::string::npos) << r.status();
  for (int v : {0, -1, 3001}) {
    bad = m;
    bad.valid_frames = v;
    r = encoder_->Encode(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("valid_frames"), std::string::npos) << r.status();
  }
  bad = m;
  bad.data.pop_back();
  r = encoder_->Encode(bad);
  EXPECT_NE(r.status().message().find("data"), std::string::npos) << r.status();
}

TEST(Qwen2AudioCheckpointTest, BadOptionsAndDirectories) {
  AudioEncoderOptions o;
  o.dtype = "int8";
  auto e = CreateAudioEncoder("/nonexistent", o);
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(e.status().message().find("dtype"), std::string::npos) << e.status();
  EXPECT_FALSE(CreateAudioEncoder("/nonexistent", {}).ok());
  EXPECT_FALSE(IsQwen2AudioModelDir("/nonexistent"));
}

TEST(Qwen2AudioCheckpointTest, WeightSpecNamesAndShapes) {
  const Qwen2AudioConfig c = TinyConfig();
  std::map<std::string, std::vector<int64_t>> spec;
  for (const auto& [n, s] : ExpectedAudioTensors(c)) spec[n] = s;
  EXPECT_EQ(spec.size(), 5u + 2 * 15 + 2);
  EXPECT_EQ(spec.at("audio_tower.conv1.weight"), (std::vector<int64_t>{64, 80, 3}));
  EXPECT_EQ(spec.at("audio_tower.conv2.weight"), (std::vector<int64_t>{64, 64, 3}));
  EXPECT_EQ(spec.at("audio_tower.embed_positions.weight"), (std::vector<int64_t>{1500, 64}));
  EXPECT_EQ(spec.at("audio_tower.layers.1.fc1.weight"), (std::vector<int64_t>{128, 64}));
  EXPECT_EQ(spec.count("audio_tower.layers.0.self_attn.k_proj.bias"), 0u);
  EXPECT_EQ(spec.count("audio_tower.layers.0.self_attn.q_proj.bias"), 1u);
  const auto proj = ExpectedAudioProjectorTensors(c);
  ASSERT_EQ(proj.size(), 2u);
  EXPECT_EQ(proj[0].first, "multi_modal_projector.linear.weight");
  EXPECT_EQ(proj[0].second, (std::vector<int64_t>{48, 64}));
}

TEST(Qwen2AudioCheckpointTest, ShapeOrNameErrorsNameTheTensor) {
  const std::string dir = TempDir("bad");
  ASSERT_TRUE(WriteRandomQwen2AudioCheckpoint(dir, TinyConfig(), {kSeed}).ok());
  const json good = json::parse(*muse::ReadFile(dir + "/config.json"));
  const struct {
    const char* key;
    int64_t value;
    const char* tensor;
  } cases[] = {
      {"encoder_ffn_dim", 96, "audio_tower.layers.0.fc1.weight"},
      {"num_mel_bins", 128, "audio_tower.conv1.weight"},
      {"max_source_positions", 1000, "audio_tower.embed_positions.weight"},
      {"encoder_layers", 3, "audio_tower.layers.2.self_attn.q_proj.weight"},
  };
  for (const auto& k : cases) {
    json j = good;
    j["audio_config"][k.key] = k.value;
    WriteFile(dir + "/config.json", j.dump());
    auto e = CreateAudioEncoder(dir, {});
    ASSERT_FALSE(e.ok()) << k.key;
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument) << e.status();
    EXPECT_NE(e.status().message().find(k.tensor), std::string::npos) << e.status();
  }
  json j = good;
  j["text_config"]["hidden_size"] = 64;
  j["text_config"]["head_dim"] = 16;
  WriteFile(dir + "/config.json", j.dump());
  auto e = CreateAudioEncoder(dir, {});
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("multi_modal_projector.linear.weight"), std::string::npos)
      << e.status();
  fs::remove_all(dir);
}

TEST(Qwen2AudioConfigTest, DefaultsAreQwen2Audio7B) {
  auto c = ParseQwen2AudioConfig(
      R"({"architectures": ["Qwen2AudioForConditionalGeneration"],
          "audio_config": {"model_type": "qwen2_audio_encoder"},
          "text_config": {"model_type": "qwen2", "vocab_size": 156032}})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->audio.d_model, 1280);
  EXPECT_EQ(c->audio.encoder_layers, 32);
  EXPECT_EQ(c->audio.encoder_attention_heads, 20);
  EXPECT_EQ(c->audio.encoder_ffn_dim, 5120);
  EXPECT_EQ(c->audio.num_mel_bins, 128);
  EXPECT_EQ(c->audio.input_frames(), 3000);
  EXPECT_EQ(c->audio_token_index, 151646);
  EXPECT_EQ(c->text.hidden_size, 4096);
  EXPECT_EQ(c->max_audio_tokens(), 750);
  // The 7B-shape preset round-trips through config.json.
  auto p = Qwen2AudioPreset("qwen2-audio-7b-shape", ModelConfig{});
  ASSERT_TRUE(p.ok());
  auto back = ParseQwen2AudioConfig(Qwen2AudioConfigToJson(*p));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->audio.d_model, 1280);
  EXPECT_EQ(back->text.hidden_size, 4096);
  EXPECT_EQ(back->text.vocab_size, 156032);
  EXPECT_FALSE(Qwen2AudioPreset("qwen2-audio-huge", ModelConfig{}).ok());
}

TEST(Qwen2AudioConfigTest, ErrorsNameTheKey) {
  const json base = json::parse(Qwen2AudioConfigToJson(TinyConfig()));
  const std::vector<std::pair<std::function<void(json&)>, std::string>> cases = {
      {[](json& j) { j["architectures"] = {"LlavaForConditionalGeneration"}; }, "architectures"},
      {[](json& j) { j["audio_config"]["d_model"] = -64; }, "audio_config.d_model"},
      {[](json& j) { j["audio_config"]["d_model"] = 66; }, "audio_config.d_model"},
      {[](json& j) { j["audio_config"]["encoder_layers"] = 0; }, "audio_config.encoder_layers"},
      {[](json& j) { j["audio_config"]["encoder_attention_heads"] = "4"; },
       "audio_config.encoder_attention_heads"},
      {[](json& j) { j["audio_config"]["encoder_ffn_dim"] = 1.5; }, "audio_config.encoder_ffn_dim"},
      {[](json& j) { j["audio_config"]["num_mel_bins"] = 0; }, "audio_config.num_mel_bins"},
      {[](json& j) { j["audio_config"]["max_source_positions"] = -1; },
       "audio_config.max_source_positions"},
      {[](json& j) { j["audio_config"]["activation_function"] = "relu"; },
       "audio_config.activation_function"},
      {[](json& j) { j["audio_config"]["model_type"] = "whisper"; }, "audio_config.model_type"},
      {[](json& j) { j["audio_config"] = 3; }, "audio_config"},
      {[](json& j) { j["text_config"]["model_type"] = "gpt2"; }, "text_config.model_type"},
      {[](json& j) { j["text_config"]["hidden_size"] = -1; }, "text_config"},
      {[](json& j) { j["audio_token_index"] = 1000; }, "audio_token_index"},
      {[](json& j) { j["audio_token_index"] = "x"; }, "audio_token_index"},
  };
  for (const auto& [mutate, key] : cases) {
    json j = base;
    mutate(j);
    auto c = ParseQwen2AudioConfig(j.dump());
    ASSERT_FALSE(c.ok()) << key;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(c.status().message().find(key), std::string::npos)
        << key << ": " << c.status().message();
  }
  EXPECT_FALSE(ParseQwen2AudioConfig("{not json").ok());
  EXPECT_TRUE(ParseQwen2AudioConfig(base.dump()).ok());
}

}  // namespace
}  // namespace muse::models::qwen2_audio
