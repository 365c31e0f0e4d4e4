#include "models/model_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>

#include "models/checkpoint.h"
#include "models/llama/llama_weights.h"
#include "tests/models/temp_dir.h"

namespace muse::models {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

// Meta-Llama-3.1-8B's config.json, verbatim.
constexpr const char* kLlama31 = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096,
  "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 131072,
  "mlp_bias": false, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
  "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 128256})";

// Qwen2-0.5B-Instruct's config.json, verbatim.
constexpr const char* kQwen2 = R"({
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
  "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 24,
  "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24,
  "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
  "sliding_window": 32768, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.40.1", "use_cache": true, "use_sliding_window": false,
  "vocab_size": 151936})";

// Mistral-7B-v0.1's config.json, verbatim.
constexpr const char* kMistral = R"({
  "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
  "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.34.0.dev0",
  "use_cache": true, "vocab_size": 32000})";

json Base() { return json::parse(kLlama31); }

std::string ErrorOf(const json& j) {
  auto c = ParseModelConfig(j.dump());
  EXPECT_FALSE(c.ok()) << j.dump();
  return c.ok() ? "" : std::string(c.status().message());
}

TEST(ModelConfigTest, ParsesLlama31) {
  auto c = ParseModelConfig(kLlama31);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Arch::kLlama);
  EXPECT_EQ(c->architecture, "LlamaForCausalLM");
  EXPECT_EQ(c->vocab_size, 128256);
  EXPECT_EQ(c->hidden_size, 4096);
  EXPECT_EQ(c->intermediate_size, 14336);
  EXPECT_EQ(c->num_hidden_layers, 32);
  EXPECT_EQ(c->num_attention_heads, 32);
  EXPECT_EQ(c->num_key_value_heads, 8);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->max_position_embeddings, 131072);
  EXPECT_DOUBLE_EQ(c->rope_theta, 500000.0);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_EQ(c->sliding_window, 0);
  EXPECT_EQ(c->rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c->rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c->rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c->torch_dtype, "bfloat16");
  EXPECT_EQ(c->bos_token_id, 128000);
  EXPECT_EQ(c->eos_token_ids, std::vector<int64_t>({128001}));
}

TEST(ModelConfigTest, ParsesQwen2WithBiasAndTiedEmbeddings) {
  auto c = ParseModelConfig(kQwen2);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Arch::kQwen2);
  EXPECT_TRUE(c->attention_bias);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->sliding_window, 0);  // use_sliding_window is false
  EXPECT_EQ(c->rope_scaling.type, "");
}

TEST(ModelConfigTest, Qwen2SlidingWindowOnlyWhenEnabled) {
  json j = json::parse(kQwen2);
  j["use_sliding_window"] = true;
  j["max_window_layers"] = 0;
  auto c = ParseModelConfig(j.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->sliding_window, 32768);
  j["max_window_layers"] = 12;  // half the layers windowed: not representable
  EXPECT_THAT(ErrorOf(j), HasSubstr("'max_window_layers'"));
}

TEST(ModelConfigTest, ParsesMistralSlidingWindow) {
  auto c = ParseModelConfig(kMistral);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Arch::kMistral);
  EXPECT_EQ(c->sliding_window, 4096);
  EXPECT_FALSE(c->attention_bias);
  json j = json::parse(kMistral);
  j["sliding_window"] = nullptr;
  c = ParseModelConfig(j.dump());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->sliding_window, 0);
}

TEST(ModelConfigTest, DefaultsAndEosList) {
  json j = Base();
  j.erase("num_key_value_heads");
  j.erase("tie_word_embeddings");
  j.erase("rope_scaling");
  j["eos_token_id"] = {128001, 128008, 128009};
  j["head_dim"] = 64;  // explicit head_dim wins over hidden / heads
  auto c = ParseModelConfig(j.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_key_value_heads, 32);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->rope_scaling.type, "");
  EXPECT_EQ(c->eos_token_ids, std::vector<int64_t>({128001, 128008, 128009}));
}

TEST(ModelConfigTest, LinearRopeScalingWithLegacyTypeKey) {
  json j = Base();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  auto c = ParseModelConfig(j.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 2.0);
}

// HF LlamaAttention puts a bias on o_proj too when attention_bias is set; mlp_bias is refused
// rather than silently ignored.
TEST(ModelConfigTest, LlamaAttentionBiasCoversOProjAndMlpBiasIsRefused) {
  json j = Base();
  j["attention_bias"] = true;
  auto c = ParseModelConfig(j.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(MakeLlamaWeightSpec(*c).layers[0].o_bias.present());
  bool has_o_bias = false;
  for (const auto& [name, shape] : ExpectedDecoderTensors(*c)) {
    if (name == "model.layers.0.self_attn.o_proj.bias")
      has_o_bias = shape == std::vector<int64_t>{c->hidden_size};
  }
  EXPECT_TRUE(has_o_bias);
  j["attention_bias"] = false;
  j["mlp_bias"] = true;
  EXPECT_THAT(ErrorOf(j), HasSubstr("mlp_bias"));
}

TEST(ModelConfigTest, UnknownArchitecture) {
  json j = Base();
  j["architectures"] = {"GPT2LMHeadModel"};
  const std::string err = ErrorOf(j);
  EXPECT_THAT(err, HasSubstr("unsupported architecture 'GPT2LMHeadModel'"));
  EXPECT_THAT(err, HasSubstr("LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"));
}

TEST(ModelConfigTest, ErrorsNameTheKey) {
  struct Case {
    std::function<void(json&)> edit;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {[](json& j) { j.erase("architectures"); }, "'architectures' is missing"},
      {[](json& j) { j["architectures"] = json::array(); }, "'architectures' must be"},
      {[](json& j) { j.erase("hidden_size"); }, "'hidden_size' is missing"},
      {[](json& j) { j["vocab_size"] = "big"; }, "'vocab_size' must be an integer"},
      {[](json& j) { j["vocab_size"] = 1.5; }, "'vocab_size' must be an integer"},
      {[](json& j) { j["intermediate_size"] = 0; }, "'intermediate_size' must be positive"},
      {[](json& j) { j["num_hidden_layers"] = -2; }, "'num_hidden_layers' must be positive"},
      {[](json& j) { j["num_key_value_heads"] = 5; }, "'num_key_value_heads' (5) must divide"},
      {[](json& j) {
         j["num_attention_heads"] = 31;
         j["num_key_value_heads"] = 31;
       },
       "'hidden_size' (4096) must be divisible by num_attention_heads (31)"},
      {[](json& j) { j["head_dim"] = 7; }, "'head_dim' must be even"},
      {[](json& j) { j["rope_theta"] = "x"; }, "'rope_theta' must be a number"},
      {[](json& j) { j["rms_norm_eps"] = 0; }, "'rms_norm_eps' must be positive"},
      {[](json& j) { j["tie_word_embeddings"] = 1; },
       "'tie_word_embeddings' must be true or false"},
      {[](json& j) {
         j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
       },
       "'rope_scaling.rope_type' has unsupported value 'yarn'"},
      {[](json& j) { j["rope_scaling"].erase("low_freq_factor"); },
       "'rope_scaling.low_freq_factor' is missing"},
      {[](json& j) { j["rope_scaling"]["high_freq_factor"] = 1.0; },
       "'rope_scaling.high_freq_factor' must be greater"},
      {[](json& j) { j["rope_scaling"] = 3; }, "'rope_scaling' must be an object"},
      {[](json& j) { j["bos_token_id"] = 200000; }, "'bos_token_id' (200000) must be a token id"},
      {[](json& j) {
         j["eos_token_id"] = {1, "x"};
       },
       "'eos_token_id' must be an integer"},
      {[](json& j) { j["torch_dtype"] = 3; }, "'torch_dtype' must be a string"},
  };
  for (const Case& c : cases) {
    json j = Base();
    c.edit(j);
    EXPECT_THAT(ErrorOf(j), HasSubstr(c.expected)) << j.dump();
  }
}

TEST(ModelConfigTest, InvalidJsonAndNonObject) {
  auto c = ParseModelConfig("{\"vocab_size\": ");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("not valid JSON"));
  c = ParseModelConfig("[1, 2]");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("top level must be an object"));
}

TEST(ModelConfigTest, ToJsonRoundTripsEveryArch) {
  for (const char* text : {kLlama31, kQwen2, kMistral}) {
    auto c = ParseModelConfig(text);
    ASSERT_TRUE(c.ok()) << c.status();
    const std::string out = ModelConfigToJson(*c);
    auto back = ParseModelConfig(out);
    ASSERT_TRUE(back.ok()) << back.status() << "\n" << out;
    EXPECT_EQ(back->arch, c->arch);
    EXPECT_EQ(back->vocab_size, c->vocab_size);
    EXPECT_EQ(back->hidden_size, c->hidden_size);
    EXPECT_EQ(back->intermediate_size, c->intermediate_size);
    EXPECT_EQ(back->num_hidden_layers, c->num_hidden_layers);
    EXPECT_EQ(back->num_attention_heads, c->num_attention_heads);
    EXPECT_EQ(back->num_key_value_heads, c->num_key_value_heads);
    EXPECT_EQ(back->head_dim, c->head_dim);
    EXPECT_EQ(back->max_position_embeddings, c->max_position_embeddings);
    EXPECT_EQ(back->rope_theta, c->rope_theta);
    EXPECT_EQ(back->rms_norm_eps, c->rms_norm_eps);
    EXPECT_EQ(back->tie_word_embeddings, c->tie_word_embeddings);
    EXPECT_EQ(back->attention_bias, c->attention_bias);
    EXPECT_EQ(back->sliding_window, c->sliding_window);
    EXPECT_EQ(back->rope_scaling.type, c->rope_scaling.type);
    EXPECT_EQ(back->rope_scaling.factor, c->rope_scaling.factor);
    EXPECT_EQ(back->rope_scaling.original_max_position_embeddings,
              c->rope_scaling.original_max_position_embeddings);
    EXPECT_EQ(back->torch_dtype, c->torch_dtype);
    EXPECT_EQ(back->bos_token_id, c->bos_token_id);
    EXPECT_EQ(back->eos_token_ids, c->eos_token_ids);
  }
}

TEST(ModelConfigTest, ToJsonWritesHfKeys) {
  auto c = ParseModelConfig(kQwen2);
  ASSERT_TRUE(c.ok());
  const json j = json::parse(ModelConfigToJson(*c));
  EXPECT_EQ(j["model_type"], "qwen2");
  EXPECT_EQ(j["architectures"], json::array({"Qwen2ForCausalLM"}));
  EXPECT_EQ(j["hidden_act"], "silu");
  EXPECT_EQ(j["use_sliding_window"], false);
  EXPECT_EQ(j["rope_scaling"], nullptr);
  EXPECT_EQ(j["eos_token_id"], 151645);
  c = ParseModelConfig(kMistral);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(json::parse(ModelConfigToJson(*c))["model_type"], "mistral");
}

TEST(ModelConfigTest, LoadMissingFileIsNotFound) {
  testing::TempDir dir;
  auto c = LoadModelConfig(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(c.status().message(), HasSubstr(dir / "config.json"));
  testing::WriteFile(dir / "config.json", "{");
  c = LoadModelConfig(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr(dir / "config.json"));
}

}  // namespace
}  // namespace muse::models
