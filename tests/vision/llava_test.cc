// LLaVA in ATen: the vision tower + projector against a dense double-precision reference written
// plainly here (conv2d patch embedding, per-head attention loops), config parsing, the decoder
// loaded from the LLaVA layout, and a full image request through the real CpuModelRunner.
#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <random>

#include "models/checkpoint.h"
#include "models/llama/llama_aten_model.h"
#include "models/llama/llama_weights.h"
#include "models/llava/llava_config.h"
#include "models/llava/llava_vision.h"
#include "models/testing/random_checkpoint.h"
#include "models/testing/random_llava_checkpoint.h"
#include "src/common/image_encode.h"
#include "src/engine/batch_builder.h"
#include "src/runtime/cpu_model_runner.h"
#include "src/server/image_prompt.h"
#include "src/vision/image_input.h"
#include "tests/vision/test_images.h"

namespace muse::models::llava {
namespace {

using Weights = std::map<std::string, at::Tensor>;

std::string TempDir(const std::string& name) {
  static std::mt19937_64 rng(std::random_device{}());
  const auto p = std::filesystem::temp_directory_path() / (name + "-" + std::to_string(rng()));
  std::filesystem::create_directories(p);
  return p.string();
}

Weights RandomWeights(const LlavaConfig& c, int seed) {
  at::manual_seed(seed);
  Weights w;
  for (const auto& list : {ExpectedVisionTensors(c, /*all=*/true), ExpectedProjectorTensors(c)}) {
    for (const auto& [name, shape] : list) {
      at::Tensor t;
      if (name.find("norm") != std::string::npos && name.find(".weight") != std::string::npos) {
        t = 1.0 + 0.2 * at::randn(shape);
      } else if (name.find("bias") != std::string::npos) {
        t = 0.2 * at::randn(shape);
      } else if (shape.size() >= 2) {
        int64_t fan_in = 1;
        for (size_t i = 1; i < shape.size(); ++i) fan_in *= shape[i];
        t = at::randn(shape) / std::sqrt(double(fan_in));
      } else {
        t = 0.5 * at::randn(shape);  // class embedding
      }
      w[name] = t;
    }
  }
  return w;
}

TensorGetter MapGetter(const Weights& w) {
  return [&w](const std::string& name,
              const std::vector<int64_t>& shape) -> absl::StatusOr<at::Tensor> {
    auto it = w.find(name);
    if (it == w.end()) return absl::NotFoundError(name);
    if (it->second.sizes().vec() != shape) return absl::InvalidArgumentError(name + " shape");
    return it->second.clone();
  };
}

// ---- Dense reference (double) ------------------------------------------------------------------

at::Tensor RefLayerNorm(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, double eps) {
  at::Tensor mean = x.mean({-1}, true);
  at::Tensor var = (x - mean).pow(2).mean({-1}, true);
  return (x - mean) / at::sqrt(var + eps) * w + b;
}

at::Tensor RefAct(const at::Tensor& x, const std::string& act) {
  if (act == "quick_gelu") return x / (1 + at::exp(-1.702 * x));
  if (act == "gelu_pytorch_tanh") {
    return 0.5 * x * (1 + at::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x.pow(3))));
  }
  return 0.5 * x * (1 + at::erf(x / std::sqrt(2.0)));
}

// Returns projected features [N, tokens, Ht] (double) with post_layernorm as requested.
at::Tensor RefEncode(const LlavaConfig& c, const Weights& w32, const at::Tensor& pixels,
                     bool post_ln) {
  auto W = [&](const std::string& n) { return w32.at(n).to(at::kDouble); };
  const VisionConfig& v = c.vision;
  const std::string vp = kVisionPrefix;
  const int64_t N = pixels.size(0), H = v.hidden_size, nh = v.num_attention_heads, d = v.head_dim();
  at::Tensor px = pixels.to(at::kDouble);
  at::Tensor patch_b =
      v.has_class_token() ? at::Tensor() : W(vp + "embeddings.patch_embedding.bias");
  at::Tensor conv = at::conv2d(px, W(vp + "embeddings.patch_embedding.weight"), patch_b,
                               {v.patch_size, v.patch_size});
  at::Tensor h = conv.flatten(2).transpose(1, 2);  // [N, P, H]
  if (v.has_class_token()) {
    h = at::cat({W(vp + "embeddings.class_embedding").view({1, 1, H}).repeat({N, 1, 1}), h}, 1);
  }
  h = h + W(vp + "embeddings.position_embedding.weight");
  if (v.arch == VisionArch::kClip)
    h = RefLayerNorm(h, W(vp + "pre_layrnorm.weight"), W(vp + "pre_layrnorm.bias"),
                     v.layer_norm_eps);
  std::vector<at::Tensor> hidden_states = {h};
  for (int64_t i = 0; i < v.num_hidden_layers; ++i) {
    const std::string l = vp + "encoder.layers." + std::to_string(i) + ".";
    auto lin = [&](const at::Tensor& x, const std::string& n) {
      return at::matmul(x, W(l + n + ".weight").t()) + W(l + n + ".bias");
    };
    at::Tensor x =
        RefLayerNorm(h, W(l + "layer_norm1.weight"), W(l + "layer_norm1.bias"), v.layer_norm_eps);
    at::Tensor q = lin(x, "self_attn.q_proj"), k = lin(x, "self_attn.k_proj"),
               val = lin(x, "self_attn.v_proj");
    at::Tensor attn = at::zeros_like(q);
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t head = 0; head < nh; ++head) {
        at::Tensor qh = q[n].narrow(1, head * d, d), kh = k[n].narrow(1, head * d, d);
        at::Tensor vh = val[n].narrow(1, head * d, d);
        at::Tensor s = at::matmul(qh, kh.t()) / std::sqrt(double(d));
        at::Tensor e = at::exp(s - std::get<0>(s.max(-1, true)));
        attn[n].narrow(1, head * d, d).copy_(at::matmul(e / e.sum(-1, true), vh));
      }
    }
    h = h + lin(attn, "self_attn.out_proj");
    x = RefLayerNorm(h, W(l + "layer_norm2.weight"), W(l + "layer_norm2.bias"), v.layer_norm_eps);
    h = h + lin(RefAct(lin(x, "mlp.fc1"), v.hidden_act), "mlp.fc2");
    hidden_states.push_back(h);
  }
  const int64_t idx = c.feature_layer_index();
  at::Tensor f = hidden_states[idx];
  if (post_ln && idx == v.num_hidden_layers) {
    f = RefLayerNorm(f, W(vp + "post_layernorm.weight"), W(vp + "post_layernorm.bias"),
                     v.layer_norm_eps);
  }
  if (c.vision_feature_select_strategy == "default") f = f.narrow(1, 1, f.size(1) - 1);
  const std::string pp = kProjectorPrefix;
  at::Tensor y = at::matmul(f, W(pp + "linear_1.weight").t()) + W(pp + "linear_1.bias");
  y = RefAct(y, "gelu");
  return at::matmul(y, W(pp + "linear_2.weight").t()) + W(pp + "linear_2.bias");
}

ModelConfig TinyDecoder() {
  ModelConfig t;
  t.architecture = "LlamaForCausalLM";
  t.arch = Arch::kLlama;
  t.vocab_size = 301;
  t.hidden_size = 48;
  t.intermediate_size = 88;
  t.num_hidden_layers = 2;
  t.num_attention_heads = 4;
  t.num_key_value_heads = 2;
  t.head_dim = 12;
  t.max_position_embeddings = 1024;
  t.rms_norm_eps = 1e-5;
  t.bos_token_id = 1;
  t.eos_token_ids = {2};
  return t;
}

struct TowerCase {
  const char* name;
  VisionConfig vision;
  int64_t feature_layer;
  const char* strategy;
  bool post_ln;
};

class TowerTest : public ::testing::TestWithParam<TowerCase> {};

TEST_P(TowerTest, MatchesDenseReference) {
  const TowerCase& tc = GetParam();
  LlavaConfig c;
  c.vision = tc.vision;
  c.text = TinyDecoder();
  c.image_token_index = 300;
  c.vision_feature_layer = tc.feature_layer;
  c.vision_feature_select_strategy = tc.strategy;
  ASSERT_TRUE(ParseLlavaConfig(LlavaConfigToJson(c)).ok());
  const Weights w = RandomWeights(c, 3);
  VisionOptions opts;
  opts.post_layernorm_on_last_layer = tc.post_ln;
  auto model = LlavaVision::Load(c, MapGetter(w), at::kFloat, at::kCPU, opts);
  ASSERT_TRUE(model.ok()) << model.status();
  at::manual_seed(11);
  const int64_t S = c.vision.image_size;
  at::Tensor pixels = at::randn({3, 3, S, S});
  at::Tensor out = (*model)->Encode(pixels);
  at::Tensor ref = RefEncode(c, w, pixels, tc.post_ln);
  ASSERT_EQ(out.sizes().vec(), (std::vector<int64_t>{3, c.num_image_tokens(), c.text.hidden_size}));
  ASSERT_EQ(ref.sizes(), out.sizes());
  const double err = (out.to(at::kDouble) - ref).abs().max().item<double>();
  const double scale = ref.abs().max().item<double>();
  EXPECT_LE(err / scale, 1e-5) << "max abs err " << err << " scale " << scale;
  // Batched encoding equals one image at a time.
  at::Tensor single = (*model)->Encode(pixels.narrow(0, 1, 1));
  EXPECT_LE((single[0] - out[1]).abs().max().item<double>() / scale, 1e-5);
}

INSTANTIATE_TEST_SUITE_P(
    Configs, TowerTest,
    ::testing::Values(
        // CLIP: image 30, patch 6 (5x5 patches), layer -2, class token dropped.
        TowerCase{"clip_default",
                  {VisionArch::kClip, 48, 80, 3, 4, 3, 30, 6, 1e-5, "quick_gelu"},
                  -2,
                  "default",
                  false},
        // CLIP "full" from a positive layer index; image 32 with patch 6 leaves a 2-pixel
        // remainder.
        TowerCase{"clip_full_remainder",
                  {VisionArch::kClip, 40, 72, 3, 5, 3, 32, 6, 1e-5, "quick_gelu"},
                  2,
                  "full",
                  false},
        // CLIP hidden_states[0]: the embeddings after pre_layrnorm.
        TowerCase{"clip_layer0",
                  {VisionArch::kClip, 32, 64, 2, 4, 3, 16, 4, 1e-5, "quick_gelu"},
                  0,
                  "full",
                  false},
        // SigLIP: image 35, patch 5 (7x7 patches), last layer, full.
        TowerCase{"siglip_full",
                  {VisionArch::kSiglip, 40, 88, 2, 5, 3, 35, 5, 1e-6, "gelu_pytorch_tanh"},
                  -1,
                  "full",
                  false},
        TowerCase{"siglip_post_ln",
                  {VisionArch::kSiglip, 40, 88, 2, 5, 3, 35, 5, 1e-6, "gelu_pytorch_tanh"},
                  -1,
                  "full",
                  true},
        TowerCase{"siglip_default_mid",
                  {VisionArch::kSiglip, 24, 40, 3, 3, 3, 28, 4, 1e-6, "gelu_pytorch_tanh"},
                  -2,
                  "default",
                  true}),
    [](const auto& info) { return std::string(info.param.name); });

// ---- Config ----------------------------------------------------------------------------------

TEST(LlavaConfigTest, ParsesPublishedTerseConfigWithDefaults) {
  // llava-hf/llava-1.5-7b-hf's config.json (abridged): most sizes come from class defaults.
  auto c = ParseLlavaConfig(R"({
    "architectures": ["LlavaForConditionalGeneration"], "ignore_index": -100, "image_token_index": 32000,
    "model_type": "llava", "pad_token_id": 32001, "projector_hidden_act": "gelu",
    "text_config": {"_name_or_path": "lmsys/vicuna-7b-v1.5", "architectures": ["LlamaForCausalLM"],
      "max_position_embeddings": 4096, "model_type": "llama", "rms_norm_eps": 1e-05,
      "torch_dtype": "float16", "vocab_size": 32064},
    "tie_word_embeddings": false, "torch_dtype": "float16", "transformers_version": "4.36.0.dev0",
    "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096,
      "model_type": "clip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 24,
      "patch_size": 14, "projection_dim": 768, "vocab_size": 32000},
    "vision_feature_layer": -2, "vision_feature_select_strategy": "default", "vocab_size": 32064})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->text.hidden_size, 4096);
  EXPECT_EQ(c->text.intermediate_size, 11008);
  EXPECT_EQ(c->text.num_hidden_layers, 32);
  EXPECT_EQ(c->text.vocab_size, 32064);
  EXPECT_EQ(c->vision.hidden_act, "quick_gelu");
  EXPECT_EQ(c->feature_layer_index(), 23);
  EXPECT_EQ(c->num_image_tokens(), 576);
  EXPECT_EQ(ExpectedVisionTensors(*c).size(), 5 + 23 * 16u);  // layers past -2 are not needed
}

TEST(LlavaConfigTest, ErrorsNameTheKey) {
  auto err = [](const std::string& json) {
    return std::string(ParseLlavaConfig(json).status().message());
  };
  const std::string arch = R"("architectures": ["LlavaForConditionalGeneration"])";
  const std::string base = arch + R"(, "text_config": {"vocab_size": 32064})";
  EXPECT_THAT(err(R"({"architectures": ["LlamaForCausalLM"]})"),
              ::testing::HasSubstr("'architectures'"));
  EXPECT_THAT(err("{" + base + R"(, "vision_feature_layer": -30})"),
              ::testing::HasSubstr("'vision_feature_layer'"));
  EXPECT_THAT(err("{" + base + R"(, "vision_feature_select_strategy": "cls"})"),
              ::testing::HasSubstr("'vision_feature_select_strategy'"));
  EXPECT_THAT(err("{" + base + R"(, "vision_config": {"model_type": "vit"}})"),
              ::testing::HasSubstr("'vision_config.model_type'"));
  EXPECT_THAT(
      err("{" + arch + R"(, "text_config": {"hidden_size": 100, "num_attention_heads": 3}})"),
      ::testing::HasSubstr("text_config: key 'hidden_size'"));
  EXPECT_THAT(err("{" + base + R"(, "image_token_index": 40000})"),
              ::testing::HasSubstr("'image_token_index'"));
  EXPECT_THAT(err("{" + base + R"(, "projector_hidden_act": "relu"})"),
              ::testing::HasSubstr("'projector_hidden_act'"));
}

// ---- Checkpoint layout and the full forward
// ------------------------------------------------------

struct Dirs {
  std::string llava, text;
  LlavaConfig config;
};

// A llava-tiny directory and a text-only directory holding the same decoder weights.
const Dirs& TinyDirs() {
  static const Dirs* dirs = [] {
    auto* d = new Dirs;
    auto c = LlavaPreset("llava-tiny", TinyDecoder());
    EXPECT_TRUE(c.ok());
    d->config = *c;
    d->llava = TempDir("llava-tiny");
    d->text = TempDir("llava-tiny-text");
    RandomCheckpointOptions o;
    o.seed = 5;
    EXPECT_TRUE(
        WriteRandomLlavaCheckpoint(d->llava, d->config, PreprocessorFor(d->config), o).ok());
    EXPECT_TRUE(WriteRandomCheckpoint(d->text, d->config.text, o).ok());
    return d;
  }();
  return *dirs;
}

TEST(LlavaCheckpointTest, DecoderLoadsFromLlavaLayoutWithPrefix) {
  const Dirs& d = TinyDirs();
  auto cfg = LoadLlavaConfig(d.llava);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_TRUE(IsLlavaModelDir(d.llava));
  EXPECT_FALSE(IsLlavaModelDir(d.text));
  auto ck = Checkpoint::Open(d.llava, cfg->text);
  ASSERT_TRUE(ck.ok()) << ck.status();
  for (const auto& [name, shape] : ExpectedDecoderTensors(cfg->text, kDecoderPrefix)) {
    ASSERT_NE((*ck)->Find(name), nullptr) << name;
  }
  auto plain_ck = Checkpoint::Open(d.text);
  ASSERT_TRUE(plain_ck.ok()) << plain_ck.status();
  // Without the prefix the LLaVA layout is refused, naming the missing tensor.
  auto unprefixed = LlamaAtenModel::Load(**ck, at::kFloat, at::kCPU);
  EXPECT_THAT(std::string(unprefixed.status().message()),
              ::testing::HasSubstr("model.embed_tokens.weight"));
  auto m = LlamaAtenModel::Load(**ck, at::kFloat, at::kCPU, kDecoderPrefix);
  ASSERT_TRUE(m.ok()) << m.status();
  auto plain = LlamaAtenModel::Load(**plain_ck, at::kFloat, at::kCPU);
  ASSERT_TRUE(plain.ok()) << plain.status();
  at::Tensor ids = at::arange(0, 300, 7, at::kLong);
  EXPECT_TRUE(at::equal((*m)->Embed(ids), (*plain)->Embed(ids)));
  at::manual_seed(1);
  at::Tensor hid = at::randn({3, cfg->text.hidden_size});
  EXPECT_TRUE(at::equal((*m)->Logits(hid), (*plain)->Logits(hid)));
}

models::Batch OneSequence(const std::vector<int32_t>& tokens, int first_block) {
  models::Batch b;
  const int T = static_cast<int>(tokens.size());
  const int nb = (T + kernels::kKvBlockSize - 1) / kernels::kKvBlockSize;
  b.input_ids = tokens;
  b.query_start_loc = {0, T};
  b.seq_lens = {T};
  b.max_blocks_per_seq = nb;
  for (int i = 0; i < nb; ++i) b.block_tables.push_back(first_block + nb - 1 - i);  // reversed
  for (int t = 0; t < T; ++t) {
    b.positions.push_back(t);
    b.slot_mapping.push_back(int64_t{b.block_tables[t / kernels::kKvBlockSize]} *
                                 kernels::kKvBlockSize +
                             t % kernels::kKvBlockSize);
  }
  b.logits_indices = {T - 1};
  return b;
}

// Concatenates single-sequence batches (block tables padded to the widest).
models::Batch Concat(const std::vector<models::Batch>& parts) {
  models::Batch b;
  b.query_start_loc = {0};
  for (const auto& p : parts)
    b.max_blocks_per_seq = std::max(b.max_blocks_per_seq, p.max_blocks_per_seq);
  for (const auto& p : parts) {
    const int off = b.num_tokens();
    b.input_ids.insert(b.input_ids.end(), p.input_ids.begin(), p.input_ids.end());
    b.positions.insert(b.positions.end(), p.positions.begin(), p.positions.end());
    b.slot_mapping.insert(b.slot_mapping.end(), p.slot_mapping.begin(), p.slot_mapping.end());
    b.seq_lens.push_back(p.seq_lens[0]);
    b.query_start_loc.push_back(b.num_tokens());
    for (int i = 0; i < b.max_blocks_per_seq; ++i) {
      b.block_tables.push_back(i < p.max_blocks_per_seq ? p.block_tables[i] : -1);
    }
    b.logits_indices.push_back(off + p.logits_indices[0]);
    for (auto e : p.embedding_overrides) {
      e.token_index += off;
      b.embedding_overrides.push_back(e);
    }
  }
  return b;
}

TEST(LlavaForwardTest, ImageRequestGivesSameLogitsAloneAndBatchedWithText) {
  const Dirs& d = TinyDirs();
  const LlavaConfig& c = d.config;
  auto pre = vision::LoadPreprocessorConfig(d.llava);
  ASSERT_TRUE(pre.ok()) << pre.status();
  auto encoder = CreateImageEncoder(d.llava, {});
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  ASSERT_EQ((*encoder)->num_image_tokens(), 16);  // 4x4 patches, class token dropped

  // Two images (PNG and JPEG of different sizes) through the real entry point, encoded as a batch.
  std::vector<vision::PreparedImage> prepared;
  for (auto [w, h, jpeg] : {std::tuple{45, 37, false}, std::tuple{20, 64, true}}) {
    const auto px = muse::testing::TestPixels(w, h, 3, w + h);
    const std::string bytes = jpeg ? muse::EncodeJpeg(px, w, h, 3) : muse::EncodePng(px, w, h, 3);
    auto p = vision::PrepareImage(bytes, *pre);
    ASSERT_TRUE(p.ok()) << p.status();
    prepared.push_back(std::move(*p));
  }
  auto enc = (*encoder)->EncodeBatch({&prepared[0].pixels, &prepared[1].pixels});
  ASSERT_TRUE(enc.ok()) << enc.status();
  std::vector<vision::ImageEmbedding> images;
  for (size_t i = 0; i < 2; ++i) {
    vision::ImageEmbedding e;
    e.num_tokens = 16;
    e.hidden_size = static_cast<int32_t>(c.text.hidden_size);
    e.digest = prepared[i].digest;
    e.data = std::make_shared<std::vector<float>>((*enc)[i]);
    images.push_back(e);
  }
  const int32_t kImg = static_cast<int32_t>(c.image_token_index);
  auto prompt = server::ExpandImagePlaceholders({1, 17, kImg, 23, 42, kImg, 9, 8}, kImg, images,
                                                static_cast<int32_t>(c.text.hidden_size));
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  ASSERT_EQ(prompt->token_ids.size(), 38u);

  runtime::RunnerOptions ro;
  ro.model_dir = d.text;
  ro.num_kv_blocks = 32;
  auto run = [&](const models::Batch& b) {
    auto runner = runtime::CpuModelRunner::Create(ro);
    EXPECT_TRUE(runner.ok()) << runner.status();
    models::Logits out;
    const absl::Status st = (*runner)->Forward(b, &out);
    EXPECT_TRUE(st.ok()) << st;
    return out;
  };
  models::Batch alone = OneSequence(prompt->token_ids, 0);
  alone.embedding_overrides = engine::EmbeddingOverridesFor(prompt->content, 0, 38, 0);
  ASSERT_EQ(alone.embedding_overrides.size(), 2u);
  const models::Logits ref = run(alone);

  std::vector<int32_t> text_a = {1,  5,  6,  7,  8,  9,  10, 11, 12, 13,
                                 14, 15, 16, 17, 18, 19, 20, 21, 22};
  std::vector<int32_t> text_b = {1, 200, 201, 202, 203};
  models::Batch mixed = Concat({OneSequence(text_a, 10), alone, OneSequence(text_b, 20)});
  // `alone` used blocks 0..2; move it to 3..5 in the mixed batch so no block is shared.
  for (int t = 0; t < 38; ++t) mixed.slot_mapping[text_a.size() + t] += 3 * kernels::kKvBlockSize;
  for (int i = 0; i < mixed.max_blocks_per_seq; ++i) {
    int32_t& blk = mixed.block_tables[mixed.max_blocks_per_seq + i];
    if (blk >= 0) blk += 3;
  }
  const models::Logits got = run(mixed);
  ASSERT_EQ(got.num_rows, 3);
  double err = 0, scale = 0;
  for (int v = 0; v < ref.vocab_size; ++v) {
    err = std::max<double>(err, std::fabs(got.row(1)[v] - ref.row(0)[v]));
    scale = std::max<double>(scale, std::fabs(ref.row(0)[v]));
  }
  EXPECT_LE(err, 1e-5 * scale + 1e-6) << "err " << err << " scale " << scale;

  // The image rows matter: without the overrides (placeholder embeddings) the logits differ.
  models::Batch plain = OneSequence(prompt->token_ids, 0);
  const models::Logits no_image = run(plain);
  double diff = 0;
  for (int v = 0; v < ref.vocab_size; ++v)
    diff = std::max<double>(diff, std::fabs(no_image.row(0)[v] - ref.row(0)[v]));
  EXPECT_GT(diff, 1e-4);
}

TEST(MakeModelTest, LlavaPresetsWriteLoadableDirectories) {
  for (const std::string vision : {"clip", "siglip"}) {
    const std::string dir = TempDir("make-llava-" + vision);
    const std::string cmd = std::string(MUSE_MAKE_MODEL_BIN) +
                            " --preset llava-tiny --vocab 500 --vision " + vision + " --out " +
                            dir + " > /dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    auto cfg = LoadLlavaConfig(dir);
    ASSERT_TRUE(cfg.ok()) << cfg.status();
    EXPECT_EQ(cfg->vision.arch, vision == "clip" ? VisionArch::kClip : VisionArch::kSiglip);
    auto pre = vision::LoadPreprocessorConfig(dir);
    ASSERT_TRUE(pre.ok()) << pre.status();
    auto encoder = CreateImageEncoder(dir, {});
    ASSERT_TRUE(encoder.ok()) << encoder.status();
    const auto px = muse::testing::TestPixels(50, 41, 3, 1);
    auto p = vision::PrepareImage(muse::EncodePng(px, 50, 41, 3), *pre);
    ASSERT_TRUE(p.ok()) << p.status();
    auto e = (*encoder)->EncodeBatch({&p->pixels});
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ((*e)[0].size(), size_t((*encoder)->num_image_tokens() * cfg->text.hidden_size));
    auto ck = Checkpoint::Open(dir, cfg->text);
    ASSERT_TRUE(ck.ok()) << ck.status();
    EXPECT_TRUE(LlamaAtenModel::Load(**ck, at::kFloat, at::kCPU, kDecoderPrefix).ok());
  }
}

TEST(LlavaEncoderTest, RejectsWrongPixelSize) {
  auto encoder = CreateImageEncoder(TinyDirs().llava, {});
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  vision::PixelValues bad{31, 32, std::vector<float>(3 * 31 * 32)};
  auto r = (*encoder)->EncodeBatch({&bad});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()),
              ::testing::HasSubstr("images[0]: pixel values are 31x32"));
}

}  // namespace
}  // namespace muse::models::llava
