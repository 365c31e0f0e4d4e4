#include "models/checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "models/llama/llama_weights.h"
#include "models/testing/random_checkpoint.h"
#include "tests/models/temp_dir.h"

namespace muse::models {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using json = nlohmann::json;

ModelConfig SmallConfig(Arch arch = Arch::kLlama) {
  ModelConfig c;
  c.arch = arch;
  c.architecture = arch == Arch::kQwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM";
  c.attention_bias = arch == Arch::kQwen2;
  c.vocab_size = 97;
  c.hidden_size = 64;
  c.intermediate_size = 88;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.max_position_embeddings = 256;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

std::string LayerName(int i, const std::string& rest) {
  return "model.layers." + std::to_string(i) + "." + rest;
}

TEST(ExpectedDecoderTensorsTest, LlamaNamesAndShapes) {
  ModelConfig c = SmallConfig();
  c.head_dim = 32;  // q width 4*32 = 128 differs from hidden 64
  const auto t = ExpectedDecoderTensors(c);
  std::map<std::string, std::vector<int64_t>> m(t.begin(), t.end());
  EXPECT_EQ(t.size(), 1u + 2u * 9u + 2u);
  EXPECT_EQ(t.front().first, "model.embed_tokens.weight");
  EXPECT_EQ(t.back().first, "lm_head.weight");
  EXPECT_EQ(m["model.embed_tokens.weight"], std::vector<int64_t>({97, 64}));
  EXPECT_EQ(m[LayerName(1, "input_layernorm.weight")], std::vector<int64_t>({64}));
  EXPECT_EQ(m[LayerName(1, "self_attn.q_proj.weight")], std::vector<int64_t>({128, 64}));
  EXPECT_EQ(m[LayerName(1, "self_attn.k_proj.weight")], std::vector<int64_t>({64, 64}));
  EXPECT_EQ(m[LayerName(1, "self_attn.v_proj.weight")], std::vector<int64_t>({64, 64}));
  EXPECT_EQ(m[LayerName(1, "self_attn.o_proj.weight")], std::vector<int64_t>({64, 128}));
  EXPECT_EQ(m[LayerName(0, "post_attention_layernorm.weight")], std::vector<int64_t>({64}));
  EXPECT_EQ(m[LayerName(0, "mlp.gate_proj.weight")], std::vector<int64_t>({88, 64}));
  EXPECT_EQ(m[LayerName(0, "mlp.up_proj.weight")], std::vector<int64_t>({88, 64}));
  EXPECT_EQ(m[LayerName(0, "mlp.down_proj.weight")], std::vector<int64_t>({64, 88}));
  EXPECT_EQ(m["model.norm.weight"], std::vector<int64_t>({64}));
  EXPECT_EQ(m["lm_head.weight"], std::vector<int64_t>({97, 64}));
  EXPECT_EQ(m.count(LayerName(0, "self_attn.q_proj.bias")), 0u);
}

TEST(ExpectedDecoderTensorsTest, BiasesAndTiedEmbeddings) {
  ModelConfig c = SmallConfig(Arch::kQwen2);
  c.tie_word_embeddings = true;
  const auto t = ExpectedDecoderTensors(c);
  std::map<std::string, std::vector<int64_t>> m(t.begin(), t.end());
  EXPECT_EQ(m.count("lm_head.weight"), 0u);
  EXPECT_EQ(m[LayerName(0, "self_attn.q_proj.bias")], std::vector<int64_t>({64}));
  EXPECT_EQ(m[LayerName(0, "self_attn.k_proj.bias")], std::vector<int64_t>({32}));
  EXPECT_EQ(m[LayerName(1, "self_attn.v_proj.bias")], std::vector<int64_t>({32}));
  EXPECT_EQ(m.count(LayerName(0, "self_attn.o_proj.bias")), 0u);
}

class CheckpointTest : public ::testing::Test {
 protected:
  // Writes a random checkpoint of SmallConfig into the temp dir.
  void Make(int shards, DType dtype = DType::kFloat32, Arch arch = Arch::kLlama) {
    RandomCheckpointOptions o;
    o.num_shards = shards;
    o.dtype = dtype;
    o.seed = 42;
    auto files = WriteRandomCheckpoint(dir_.path(), SmallConfig(arch), o);
    ASSERT_TRUE(files.ok()) << files.status();
  }
  std::string OpenError() {
    auto ck = Checkpoint::Open(dir_.path());
    EXPECT_FALSE(ck.ok());
    return ck.ok() ? "" : std::string(ck.status().message());
  }
  json Index() { return json::parse(testing::ReadFile(dir_ / "model.safetensors.index.json")); }
  void WriteIndex(const json& j) {
    testing::WriteFile(dir_ / "model.safetensors.index.json", j.dump());
  }
  testing::TempDir dir_;
};

TEST_F(CheckpointTest, SingleFileOpensWithAllExpectedTensors) {
  Make(1);
  auto ck = Checkpoint::Open(dir_.path());
  ASSERT_TRUE(ck.ok()) << ck.status();
  EXPECT_EQ((*ck)->dir(), dir_.path());
  EXPECT_EQ((*ck)->config().vocab_size, 97);
  const auto expected = ExpectedDecoderTensors((*ck)->config());
  EXPECT_EQ((*ck)->names().size(), expected.size());
  for (const auto& [name, shape] : expected) {
    auto v = (*ck)->Get(name, shape);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ((*v)->dtype, DType::kFloat32);
    const std::vector<float> want = RandomTensorValues(name, (*v)->numel(), 42);
    EXPECT_EQ(std::memcmp((*v)->data, want.data(), (*v)->nbytes), 0) << name;
  }
  EXPECT_EQ((*ck)->Find("nope"), nullptr);
}

TEST_F(CheckpointTest, ShardedRoundTripMatchesSingleFile) {
  Make(1, DType::kBFloat16, Arch::kQwen2);
  std::map<std::string, std::string> single;
  {
    auto ck = Checkpoint::Open(dir_.path());
    ASSERT_TRUE(ck.ok()) << ck.status();
    for (const auto& n : (*ck)->names()) {
      const TensorView* v = (*ck)->Find(n);
      single[n] = std::string(static_cast<const char*>(v->data), v->nbytes);
    }
  }
  Make(3, DType::kBFloat16, Arch::kQwen2);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "model.safetensors"));  // replaced by shards
  for (int i = 1; i <= 3; ++i) {
    EXPECT_TRUE(std::filesystem::exists(
        dir_ / ("model-0000" + std::to_string(i) + "-of-00003.safetensors")));
  }
  const json index = Index();
  uint64_t total = 0;
  auto ck = Checkpoint::Open(dir_.path());
  ASSERT_TRUE(ck.ok()) << ck.status();
  ASSERT_EQ((*ck)->names().size(), single.size());
  for (const auto& [name, bytes] : single) {
    const TensorView* v = (*ck)->Find(name);
    ASSERT_NE(v, nullptr) << name;
    EXPECT_EQ(v->dtype, DType::kBFloat16);
    EXPECT_EQ(std::string(static_cast<const char*>(v->data), v->nbytes), bytes) << name;
    EXPECT_TRUE(index["weight_map"].contains(name)) << name;
    total += v->nbytes;
  }
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total);
}

TEST_F(CheckpointTest, GetNamesTensorAndBothShapes) {
  Make(1);
  auto ck = Checkpoint::Open(dir_.path());
  ASSERT_TRUE(ck.ok());
  auto v = (*ck)->Get("model.layers.0.self_attn.q_proj.weight", {64, 32});
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(v.status().message(),
            "tensor 'model.layers.0.self_attn.q_proj.weight' has shape [64, 64] but the config "
            "expects [64, 32]");
  v = (*ck)->Get("model.layers.7.mlp.up_proj.weight", {88, 64});
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(v.status().message(),
              HasSubstr("tensor 'model.layers.7.mlp.up_proj.weight' not found"));
}

TEST_F(CheckpointTest, MissingConfig) {
  Make(1);
  std::filesystem::remove(dir_ / "config.json");
  auto ck = Checkpoint::Open(dir_.path());
  ASSERT_FALSE(ck.ok());
  EXPECT_EQ(ck.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ck.status().message(), HasSubstr(dir_ / "config.json"));
}

TEST_F(CheckpointTest, MissingWeights) {
  Make(1);
  std::filesystem::remove(dir_ / "model.safetensors");
  auto ck = Checkpoint::Open(dir_.path());
  ASSERT_FALSE(ck.ok());
  EXPECT_EQ(ck.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ck.status().message(), AllOf(HasSubstr(dir_ / "model.safetensors"),
                                           HasSubstr("model.safetensors.index.json")));
}

TEST_F(CheckpointTest, UnknownArchitecture) {
  Make(1);
  json config = json::parse(testing::ReadFile(dir_ / "config.json"));
  config["architectures"] = {"FalconForCausalLM"};
  testing::WriteFile(dir_ / "config.json", config.dump());
  EXPECT_THAT(OpenError(), AllOf(HasSubstr(dir_ / "config.json"),
                                 HasSubstr("unsupported architecture 'FalconForCausalLM'")));
}

TEST_F(CheckpointTest, IndexPointsAtMissingShard) {
  Make(2);
  json index = Index();
  index["weight_map"]["model.norm.weight"] = "model-00009-of-00009.safetensors";
  WriteIndex(index);
  auto ck = Checkpoint::Open(dir_.path());
  ASSERT_FALSE(ck.ok());
  EXPECT_EQ(ck.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ck.status().message(),
              AllOf(HasSubstr("'model.norm.weight'"), HasSubstr("model-00009-of-00009.safetensors"),
                    HasSubstr("does not exist")));
}

TEST_F(CheckpointTest, IndexListsTensorAbsentFromShard) {
  Make(2);
  json index = Index();
  index["weight_map"]["model.layers.5.mlp.up_proj.weight"] = "model-00001-of-00002.safetensors";
  WriteIndex(index);
  EXPECT_THAT(OpenError(), AllOf(HasSubstr("'model.layers.5.mlp.up_proj.weight'"),
                                 HasSubstr("model-00001-of-00002.safetensors"),
                                 HasSubstr("does not contain it")));
}

TEST_F(CheckpointTest, IndexMapsTensorToTheWrongShard) {
  Make(2);
  json index = Index();
  const std::string shard = index["weight_map"]["lm_head.weight"];
  const std::string other = shard == "model-00001-of-00002.safetensors"
                                ? "model-00002-of-00002.safetensors"
                                : "model-00001-of-00002.safetensors";
  index["weight_map"]["lm_head.weight"] = other;
  WriteIndex(index);
  EXPECT_THAT(OpenError(), AllOf(HasSubstr("'lm_head.weight'"), HasSubstr(other),
                                 HasSubstr("does not contain it")));
}

TEST_F(CheckpointTest, TensorDuplicatedAcrossShards) {
  Make(2);
  // Rewrite shard 2 with an extra copy of a tensor that lives in shard 1.
  const std::string s1 = dir_ / "model-00001-of-00002.safetensors";
  const std::string s2 = dir_ / "model-00002-of-00002.safetensors";
  std::vector<TensorToWrite> tensors;
  std::string dup;
  {
    auto f1 = SafetensorsFile::Open(s1);
    auto f2 = SafetensorsFile::Open(s2);
    ASSERT_TRUE(f1.ok() && f2.ok());
    const TensorView& d = (*f1)->tensors().begin()->second;
    dup = d.name;
    for (const TensorView* v : {&d}) {
      const auto* p = static_cast<const uint8_t*>(v->data);
      tensors.push_back({v->name, v->dtype, v->shape, std::vector<uint8_t>(p, p + v->nbytes)});
    }
    for (const auto& [name, v] : (*f2)->tensors()) {
      const auto* p = static_cast<const uint8_t*>(v.data);
      tensors.push_back({name, v.dtype, v.shape, std::vector<uint8_t>(p, p + v.nbytes)});
    }
  }
  ASSERT_TRUE(WriteSafetensors(s2, tensors).ok());
  EXPECT_THAT(OpenError(),
              AllOf(HasSubstr("tensor '" + dup + "' is in both"), HasSubstr(s1), HasSubstr(s2)));
}

TEST_F(CheckpointTest, CorruptShardReportsItsPath) {
  Make(2);
  testing::WriteFile(dir_ / "model-00002-of-00002.safetensors", "xyz");
  EXPECT_THAT(OpenError(), AllOf(HasSubstr("model-00002-of-00002.safetensors"),
                                 HasSubstr("shorter than the 8-byte header length")));
}

TEST_F(CheckpointTest, IndexRejectsPathsOutsideTheDirectory) {
  Make(2);
  json index = Index();
  index["weight_map"]["model.norm.weight"] = "../elsewhere.safetensors";
  WriteIndex(index);
  EXPECT_THAT(OpenError(), HasSubstr("invalid shard name '../elsewhere.safetensors'"));
}

}  // namespace
}  // namespace muse::models
