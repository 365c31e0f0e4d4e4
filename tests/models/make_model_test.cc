// muse-make-model end to end: the binary's flags, presets and determinism, plus the random
// values it stores.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "models/checkpoint.h"
#include "models/half.h"
#include "models/llama/llama_weights.h"
#include "models/testing/random_checkpoint.h"
#include "tests/models/temp_dir.h"

namespace muse::models {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

// Runs muse-make-model with `args`; returns its exit status.
int MakeModel(const std::string& args) {
  const std::string cmd = std::string(MUSE_MAKE_MODEL_BIN) + " " + args + " > /dev/null 2>&1";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// Small enough to write in milliseconds, odd sizes on purpose.
constexpr const char* kSmallDims = "--vocab 1003 --hidden 48 --heads 6 --kv-heads 2 --ffn 136";

std::map<std::string, std::string> DirContents(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    out[e.path().filename().string()] = testing::ReadFile(e.path().string());
  }
  return out;
}

TEST(MakeModelTest, SameSeedSameBytesDifferentSeedDifferentWeights) {
  testing::TempDir dir;
  for (const char* name : {"a", "b", "c"}) {
    const std::string seed = std::string(name) == "c" ? "8" : "7";
    ASSERT_EQ(MakeModel(std::string(kSmallDims) + " --dtype bfloat16 --seed " + seed + " --out " +
                        (dir / name)),
              0);
  }
  const auto a = DirContents(dir / "a");
  const auto b = DirContents(dir / "b");
  const auto c = DirContents(dir / "c");
  EXPECT_EQ(a.size(), 3u);
  // The tiny preset's Llama 3 special ids do not fit vocab 1003, so they fall back to 1 / 2.
  auto config = ParseModelConfig(a.at("config.json"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->bos_token_id, 1);
  EXPECT_EQ(config->eos_token_ids, std::vector<int64_t>({2}));
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.at("config.json"), c.at("config.json"));
  EXPECT_EQ(a.at("model.safetensors").size(), c.at("model.safetensors").size());
  EXPECT_NE(a.at("model.safetensors"), c.at("model.safetensors"));
}

TEST(MakeModelTest, TinyPresetIsLlama3Shaped) {
  testing::TempDir dir;
  ASSERT_EQ(MakeModel("--preset tiny --dtype bfloat16 --out " + dir.path()), 0);
  auto ck = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ck.ok()) << ck.status();
  const ModelConfig& c = (*ck)->config();
  EXPECT_EQ(c.arch, Arch::kLlama);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.intermediate_size, 172);
  EXPECT_EQ(c.max_position_embeddings, 8192);
  EXPECT_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>({128001, 128009}));
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  for (const auto& [name, shape] : ExpectedDecoderTensors(c)) {
    auto v = (*ck)->Get(name, shape);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ((*v)->dtype, DType::kBFloat16);
  }
  const json gen = json::parse(testing::ReadFile(dir / "generation_config.json"));
  EXPECT_EQ(gen["bos_token_id"], 128000);
  EXPECT_EQ(gen["eos_token_id"], json({128001, 128009}));
}

TEST(MakeModelTest, OverridesArchAndShards) {
  testing::TempDir dir;
  ASSERT_EQ(MakeModel(std::string(kSmallDims) +
                      " --arch qwen2 --layers 3 --head-dim 24 --tie --rope-scaling none --bos 5 "
                      "--eos 6,7 "
                      "--shards 2 --dtype float16 --out " +
                      dir.path()),
            0);
  auto ck = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ck.ok()) << ck.status();
  const ModelConfig& c = (*ck)->config();
  EXPECT_EQ(c.arch, Arch::kQwen2);
  EXPECT_EQ(c.num_hidden_layers, 3);
  EXPECT_EQ(c.head_dim, 24);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_EQ(c.rope_scaling.type, "");
  EXPECT_EQ(c.bos_token_id, 5);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>({6, 7}));
  EXPECT_EQ((*ck)->Find("lm_head.weight"), nullptr);
  EXPECT_TRUE(std::filesystem::exists(dir / "model.safetensors.index.json"));
  auto q = (*ck)->Get("model.layers.2.self_attn.q_proj.weight", {6 * 24, 48});
  ASSERT_TRUE(q.ok()) << q.status();
  auto bias = (*ck)->Get("model.layers.2.self_attn.k_proj.bias", {2 * 24});
  ASSERT_TRUE(bias.ok()) << bias.status();
  EXPECT_EQ((*bias)->dtype, DType::kFloat16);
}

TEST(MakeModelTest, MistralKeepsPlainRopeUnlessAsked) {
  testing::TempDir dir;
  ASSERT_EQ(MakeModel(std::string(kSmallDims) + " --arch mistral --sliding-window 64 --out " +
                      (dir / "a")),
            0);
  auto c = LoadModelConfig(dir / "a");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Arch::kMistral);
  EXPECT_EQ(c->sliding_window, 64);
  EXPECT_EQ(c->rope_scaling.type, "");
  ASSERT_EQ(MakeModel(std::string(kSmallDims) + " --arch mistral --rope-scaling llama3 --out " +
                      (dir / "b")),
            0);
  c = LoadModelConfig(dir / "b");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling.type, "llama3");
}

TEST(MakeModelTest, StoredValuesAreTheRoundedRandomStream) {
  testing::TempDir dir;
  ASSERT_EQ(MakeModel(std::string(kSmallDims) + " --dtype bfloat16 --seed 3 --out " + dir.path()),
            0);
  auto ck = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ck.ok()) << ck.status();
  for (const std::string name : {"model.norm.weight", "model.layers.1.mlp.down_proj.weight"}) {
    const TensorView* v = (*ck)->Find(name);
    ASSERT_NE(v, nullptr);
    const std::vector<float> want = RandomTensorValues(name, v->numel(), 3);
    const auto* got = static_cast<const uint16_t*>(v->data);
    double sum = 0, sum_sq = 0;
    for (int64_t i = 0; i < v->numel(); ++i) {
      ASSERT_EQ(got[i], FloatToBf16(want[i])) << name << " " << i;
      sum += want[i];
      sum_sq += double(want[i]) * want[i];
    }
    const double mean = sum / v->numel();
    const double stddev = std::sqrt(sum_sq / v->numel() - mean * mean);
    if (name == "model.norm.weight") {  // 1 + 0.1 * N(0, 1): near one, never constant
      EXPECT_NEAR(mean, 1.0, 0.05);
      EXPECT_NEAR(stddev, 0.1, 0.04);
    } else {  // 0.02 * N(0, 1), 6528 samples
      EXPECT_NEAR(mean, 0.0, 0.002);
      EXPECT_NEAR(stddev, 0.02, 0.002);
    }
  }
}

TEST(MakeModelTest, TokenizerIsCopiedAndGrowsVocab) {
  testing::TempDir dir;
  std::filesystem::create_directories(dir / "tok");
  const json tok = {{"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"c", 1500}}}}},
                    {"added_tokens", {{{"id", 2047}, {"content", "<|end|>"}}}}};
  testing::WriteFile(dir / "tok/tokenizer.json", tok.dump());
  testing::WriteFile(dir / "tok/tokenizer_config.json", "{\"bos_token\": \"a\"}");
  ASSERT_EQ(MakeModel(std::string(kSmallDims) + " --tokenizer " + (dir / "tok") + " --out " +
                      (dir / "m")),
            0);
  auto c = LoadModelConfig(dir / "m");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vocab_size, 2048);  // larger than --vocab 1003
  EXPECT_EQ(testing::ReadFile(dir / "m/tokenizer.json"), tok.dump());
  EXPECT_EQ(testing::ReadFile(dir / "m/tokenizer_config.json"), "{\"bos_token\": \"a\"}");
}

TEST(MakeModelTest, BadFlagsFail) {
  testing::TempDir dir;
  // Usage errors (flag names, values, ranges) exit 2; a shape the model cannot have exits 1.
  EXPECT_EQ(MakeModel("--preset huge --out " + dir.path()), 2);
  EXPECT_EQ(MakeModel("--bogus 1 --out " + dir.path()), 2);
  EXPECT_EQ(MakeModel("--preset tiny"), 2);  // no --out
  EXPECT_EQ(MakeModel("--arch gpt2 --out " + dir.path()), 2);
  EXPECT_EQ(MakeModel(std::string(kSmallDims) + " --kv-heads 4 --out " + dir.path()), 1);
  EXPECT_EQ(MakeModel("--dtype int8 --out " + dir.path()), 2);
  EXPECT_EQ(MakeModel("--seed x --out " + dir.path()), 2);
  EXPECT_EQ(MakeModel("--out"), 2);  // missing value
  EXPECT_FALSE(std::filesystem::exists(dir / "config.json"));
}

// Runs muse-make-model with `args`, keeping stdout and stderr apart.
struct Captured {
  int exit_code;
  std::string out, err;
};
Captured MakeModelCapture(const testing::TempDir& dir, const std::string& args) {
  const std::string cmd = std::string(MUSE_MAKE_MODEL_BIN) + " " + args + " >" + (dir / "stdout") +
                          " 2>" + (dir / "stderr");
  const int rc = std::system(cmd.c_str());
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, testing::ReadFile(dir / "stdout"),
          testing::ReadFile(dir / "stderr")};
}

TEST(MakeModelTest, CommandLineConventions) {
  testing::TempDir dir;
  // --help: generated, on stdout, exit 0.
  Captured r = MakeModelCapture(dir, "--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("--sliding-window"));
  EXPECT_THAT(r.out, HasSubstr("--out TEXT REQUIRED"));
  EXPECT_EQ(r.err, "");

  // --flag=value and --flag value give the same bytes.
  r = MakeModelCapture(dir,
                       "--vocab=1003 --hidden=48 --heads=6 --kv-heads=2 --ffn=136 --seed=5 "
                       "--bos=1 --eos=2,3 --out=" +
                           (dir / "eq"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("model.safetensors"));
  ASSERT_EQ(
      MakeModel(std::string(kSmallDims) + " --seed 5 --bos 1 --eos 2,3 --out " + (dir / "space")),
      0);
  EXPECT_EQ(DirContents(dir / "eq"), DirContents(dir / "space"));

  // Out of range: exit 2, the flag named on stderr, nothing on stdout, nothing written.
  for (const auto& [args, flag] :
       std::vector<std::pair<std::string, std::string>>{{"--shards 0", "--shards"},
                                                        {"--layers=0", "--layers"},
                                                        {"--bos -1", "--bos"},
                                                        {"--eos 1,-2", "--eos"},
                                                        {"--vision dino", "--vision"}}) {
    r = MakeModelCapture(dir, args + " --out " + (dir / "bad"));
    EXPECT_EQ(r.exit_code, 2) << args;
    EXPECT_THAT(r.err, HasSubstr("muse-make-model: " + flag)) << args;
    EXPECT_EQ(r.out, "") << args;
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "bad"));

  // `--` ends the options: what follows is not a flag.
  r = MakeModelCapture(dir, "--out " + (dir / "dash") + " -- --tie");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--tie"));
}

TEST(RandomCheckpointTest, RejectsTooManyShards) {
  testing::TempDir dir;
  auto c = ParseModelConfig(R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 10,
      "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1,
      "num_attention_heads": 2, "max_position_embeddings": 16})");
  ASSERT_TRUE(c.ok()) << c.status();
  RandomCheckpointOptions o;
  o.num_shards = 100;
  auto files = WriteRandomCheckpoint(dir.path(), *c, o);
  ASSERT_FALSE(files.ok());
  EXPECT_THAT(files.status().message(), HasSubstr("shards must be between 1 and 12"));
  o.num_shards = 12;  // one tensor per shard
  files = WriteRandomCheckpoint(dir.path(), *c, o);
  ASSERT_TRUE(files.ok()) << files.status();
  auto ck = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ck.ok()) << ck.status();
  EXPECT_EQ((*ck)->names().size(), 12u);
}

}  // namespace
}  // namespace muse::models
