// The CUDA runner against the fp32 CPU runtime (LlamaCpuModel, itself checked against a dense
// reference in runtime_test) on the same random checkpoints: prefill chunks mixed with decode
// tokens, then 64 teacher-forced decode steps, bf16 on the GPU. Also CUDA graphs vs eager, and
// the errors. Needs no libtorch, so the binary runs on GPU machines that only have CUDA.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/packed_gemm.h"
#include "models/checkpoint.h"
#include "models/llama/llama_cpu_model.h"
#include "models/testing/random_checkpoint.h"
#include "src/runtime/cuda/cuda_model_runner.h"
#include "tests/runtime/test_configs.h"

namespace muse::runtime {
namespace {

using models::Batch;
using models::Logits;

// The shared small configs (tests/runtime/test_configs.h) with heads the CUDA attention kernels
// take (head_dim 16, 32, 64, 80, 96 or 128): 4 heads, 2 KV heads, hidden = 4 * head_dim. At
// head_dim 16 this is the text model of models/muse-tiny (hidden 64, intermediate 172).
models::ModelConfig Config(const std::string& variant, int head_dim = 64) {
  models::ModelConfig c = muse::testing::SmallConfig(variant);
  c.vocab_size = 1000;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = head_dim;
  c.hidden_size = 4 * head_dim;
  c.intermediate_size = c.hidden_size * 43 / 16;  // 688 at hidden 256, 172 at 64
  return c;
}

std::string TempDir(const std::string& name) {
  return muse::testing::MakeTempDir("muse-cuda-" + name);
}

double RelErr(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = static_cast<double>(got[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// A fixed schedule over 3 sequences: step 0 prefills chunks (20 of seq 0's 37 prompt tokens, seq
// 1's single token, seq 2's 20), step 1 the rest of seq 0 with one decode token each for seqs 1
// and 2, then `decode_steps` steps of one teacher-forced token per sequence. Blocks are shuffled.
struct Schedule {
  std::vector<Batch> steps;
};

Schedule MakeSchedule(int vocab, int pool_blocks, int decode_steps, uint32_t seed) {
  std::mt19937 rng(seed);
  const std::vector<int> prompt = {37, 1, 20};
  const int total_len = 37 + 1 + decode_steps;  // longest context
  const int per_seq = (total_len + kernels::kKvBlockSize - 1) / kernels::kKvBlockSize;
  std::vector<int32_t> free(pool_blocks);
  std::iota(free.begin(), free.end(), 0);
  std::shuffle(free.begin(), free.end(), rng);
  std::vector<std::vector<int32_t>> blocks(3), ids(3);
  for (int s = 0; s < 3; ++s) {
    for (int j = 0; j < per_seq; ++j) {
      blocks[s].push_back(free.back());
      free.pop_back();
    }
    for (int i = 0; i < prompt[s] + decode_steps + 1; ++i) ids[s].push_back(rng() % vocab);
  }
  std::vector<int> done(3, 0);
  Schedule out;
  auto step = [&](const std::vector<int>& take) {
    Batch b;
    b.max_blocks_per_seq = per_seq;
    b.query_start_loc.push_back(0);
    for (int s = 0; s < 3; ++s) {
      for (int i = 0; i < take[s]; ++i) {
        const int p = done[s] + i;
        b.input_ids.push_back(ids[s][p]);
        b.positions.push_back(p);
        b.slot_mapping.push_back(static_cast<int64_t>(blocks[s][p / kernels::kKvBlockSize]) *
                                     kernels::kKvBlockSize +
                                 p % kernels::kKvBlockSize);
      }
      done[s] += take[s];
      b.logits_indices.push_back(static_cast<int32_t>(b.input_ids.size()) - 1);
      b.query_start_loc.push_back(static_cast<int32_t>(b.input_ids.size()));
      b.seq_lens.push_back(done[s]);
      for (int j = 0; j < per_seq; ++j) b.block_tables.push_back(blocks[s][j]);
    }
    out.steps.push_back(std::move(b));
  };
  step({20, 1, 20});
  step({17, 1, 1});
  for (int i = 0; i < decode_steps; ++i) step({1, 1, 1});
  return out;
}

#define REQUIRE_GPU()                                           \
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device"; \
  if (!kernels::cpu::PackedGemmSupported()) GTEST_SKIP() << "CPU reference needs AVX2 + FMA"

// The schedule through the CUDA runner (bf16) and the fp32 CPU forward; logits within bf16 noise.
void ExpectCudaMatchesCpu(const models::ModelConfig& cfg, const std::string& name) {
  const std::string dir = TempDir(name);
  ASSERT_FALSE(dir.empty());
  // bf16 weights: the fp32 reference widens exactly the values the GPU holds.
  ASSERT_TRUE(
      models::WriteRandomCheckpoint(dir, cfg, {.seed = 11, .dtype = models::DType::kBFloat16})
          .ok());
  auto ck = models::Checkpoint::Open(dir);
  ASSERT_TRUE(ck.ok()) << ck.status();
  auto ref = models::LlamaCpuModel::Load(**ck, "", 2);
  ASSERT_TRUE(ref.ok()) << ref.status();
  const int pool = 64;
  auto gpu = CudaModelRunner::Create(
      {.model_dir = dir, .device = "cuda", .dtype = "bfloat16", .num_kv_blocks = pool});
  ASSERT_TRUE(gpu.ok()) << gpu.status();

  const int64_t kv =
      static_cast<int64_t>(pool) * kernels::kKvBlockSize * cfg.num_key_value_heads * cfg.head_dim;
  std::vector<std::vector<float>> kc(cfg.num_hidden_layers, std::vector<float>(kv, 0.f)), vc = kc;
  std::vector<float*> kp, vp;
  for (auto& v : kc) kp.push_back(v.data());
  for (auto& v : vc) vp.push_back(v.data());

  const Schedule sched = MakeSchedule(cfg.vocab_size, pool, /*decode_steps=*/64, 5);
  double worst = 0;
  for (size_t i = 0; i < sched.steps.size(); ++i) {
    const Batch& b = sched.steps[i];
    std::vector<float> want(b.logits_indices.size() * cfg.vocab_size);
    (*ref)->Forward(b, kp, vp, want.data());
    Logits got;
    const auto st = (*gpu)->Forward(b, &got);
    ASSERT_TRUE(st.ok()) << "step " << i << ": " << st;
    ASSERT_EQ(got.data.size(), want.size());
    for (float v : got.data) ASSERT_TRUE(std::isfinite(v)) << "step " << i;
    const double err = RelErr(got.data, want);
    worst = std::max(worst, err);
    // bf16 activations through 3 layers: a few parts in a thousand; 5 % is the bf16 rule of
    // runtime_test's CPU bf16 check.
    EXPECT_LT(err, 0.05) << name << " step " << i;
  }
  EXPECT_GT(worst, 0.0);  // it really ran in bf16
  EXPECT_GT((*gpu)->num_cuda_graphs(), 0) << "decode steps should have replayed CUDA graphs";
}

class CudaVsCpu : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaVsCpu, TeacherForcedLogitsStayWithinBf16Noise) {
  REQUIRE_GPU();
  ExpectCudaMatchesCpu(Config(GetParam()), GetParam());
}

INSTANTIATE_TEST_SUITE_P(Archs, CudaVsCpu,
                         ::testing::Values("llama", "qwen2", "mistral", "llama_bias"));

// Small head dims: the muse-tiny text model shape (head_dim 16, hidden 64), and head_dim 32 with
// qkv biases (SmolLM-class heads).
TEST(CudaVsCpuSmallHeads, MuseTinyShapeHeadDim16) {
  REQUIRE_GPU();
  ExpectCudaMatchesCpu(Config("llama", 16), "llama-hd16");
}

TEST(CudaVsCpuSmallHeads, HeadDim32WithBias) {
  REQUIRE_GPU();
  ExpectCudaMatchesCpu(Config("qwen2", 32), "qwen2-hd32");
}

// Graph replays (padded batch, bucketed context) against eager launches of the same steps.
TEST(CudaRunner, GraphReplayMatchesEagerLaunches) {
  REQUIRE_GPU();
  const auto cfg = Config("qwen2");
  const std::string dir = TempDir("graphs");
  ASSERT_TRUE(
      models::WriteRandomCheckpoint(dir, cfg, {.seed = 3, .dtype = models::DType::kBFloat16}).ok());
  auto a = CudaModelRunner::Create(
      {.model_dir = dir, .device = "cuda", .dtype = "bfloat16", .num_kv_blocks = 64});
  auto b = CudaModelRunner::Create(
      {.model_dir = dir, .device = "cuda", .dtype = "bfloat16", .num_kv_blocks = 64});
  ASSERT_TRUE(a.ok() && b.ok());
  (*b)->set_use_cuda_graphs(false);
  const Schedule sched = MakeSchedule(cfg.vocab_size, 64, 20, 8);
  for (size_t i = 0; i < sched.steps.size(); ++i) {
    Logits x, y;
    ASSERT_TRUE((*a)->Forward(sched.steps[i], &x).ok());
    ASSERT_TRUE((*b)->Forward(sched.steps[i], &y).ok());
    // Same kernels; the padded batch (cuBLAS may pick other GEMM kernels for m = 4 than m = 3)
    // and the split-K partitioning of decode attention round differently in bf16.
    EXPECT_LT(RelErr(x.data, y.data), 2e-2) << "step " << i;
#ifdef MUSE_CUDA_EMULATOR
    // The emulator's GEMM computes each row alone and these short contexts use one partition:
    // a replayed graph must then give exactly what the eager launches give.
    EXPECT_EQ(x.data, y.data) << "step " << i;
#endif
  }
  EXPECT_GT((*a)->num_cuda_graphs(), 0);
  EXPECT_EQ((*b)->num_cuda_graphs(), 0);
}

// One prefill step of `ids` at positions [start, start + ids.size()) of a sequence whose KV blocks
// are `blocks`; logits for the last token.
Batch PrefillStep(const std::vector<int32_t>& ids, int start, const std::vector<int32_t>& blocks) {
  Batch b;
  b.max_blocks_per_seq = static_cast<int32_t>(blocks.size());
  b.query_start_loc = {0, static_cast<int32_t>(ids.size())};
  for (size_t i = 0; i < ids.size(); ++i) {
    const int p = start + static_cast<int>(i);
    b.input_ids.push_back(ids[i]);
    b.positions.push_back(p);
    b.slot_mapping.push_back(static_cast<int64_t>(blocks[p / kernels::kKvBlockSize]) *
                                 kernels::kKvBlockSize +
                             p % kernels::kKvBlockSize);
  }
  b.seq_lens = {start + static_cast<int32_t>(ids.size())};
  b.block_tables = blocks;
  b.logits_indices = {static_cast<int32_t>(ids.size()) - 1};
  return b;
}

// A prefix-cache hit as the engine makes it: sequence B's first two KV blocks are sequence A's
// (32 identical tokens, written by A's prefill), so B prefills only its 13-token suffix over that
// cached context. Its logits must match a runner that prefilled all of B itself.
TEST(CudaRunner, PrefixCacheHitMatchesAFullPrefill) {
  REQUIRE_GPU();
  const auto cfg = Config("llama");
  const std::string dir = TempDir("prefix");
  ASSERT_TRUE(
      models::WriteRandomCheckpoint(dir, cfg, {.seed = 6, .dtype = models::DType::kBFloat16}).ok());
  auto shared = CudaModelRunner::Create(
      {.model_dir = dir, .device = "cuda", .dtype = "bfloat16", .num_kv_blocks = 16});
  auto fresh = CudaModelRunner::Create(
      {.model_dir = dir, .device = "cuda", .dtype = "bfloat16", .num_kv_blocks = 16});
  ASSERT_TRUE(shared.ok() && fresh.ok());
  std::mt19937 rng(12);
  std::vector<int32_t> a(40), b(45);
  for (auto& t : a) t = static_cast<int32_t>(rng() % cfg.vocab_size);
  for (size_t i = 0; i < b.size(); ++i)
    b[i] = i < 32 ? a[i] : static_cast<int32_t>(rng() % cfg.vocab_size);
  Logits la, hit, full;
  ASSERT_TRUE((*shared)->Forward(PrefillStep(a, 0, {3, 7, 1}), &la).ok());
  const std::vector<int32_t> suffix(b.begin() + 32, b.end());
  ASSERT_TRUE((*shared)->Forward(PrefillStep(suffix, 32, {3, 7, 9}), &hit).ok());
  ASSERT_TRUE((*fresh)->Forward(PrefillStep(b, 0, {3, 7, 9}), &full).ok());
  ASSERT_EQ(hit.data.size(), full.data.size());
  // Same kernels on the same K/V values; only the prefill tiling of the query rows differs.
  EXPECT_LT(RelErr(hit.data, full.data), 5e-3);
}

TEST(CudaRunner, BadBatchesAreRejectedAndTheRunnerGoesOn) {
  REQUIRE_GPU();
  const auto cfg = Config("llama");
  const std::string dir = TempDir("bad");
  ASSERT_TRUE(models::WriteRandomCheckpoint(dir, cfg, {.seed = 4}).ok());
  auto r = CudaModelRunner::Create(
      {.model_dir = dir, .device = "cuda", .dtype = "bfloat16", .num_kv_blocks = 8});
  ASSERT_TRUE(r.ok()) << r.status();
  Batch good;
  good.input_ids = {5, 6};
  good.positions = {0, 1};
  good.query_start_loc = {0, 2};
  good.seq_lens = {2};
  good.block_tables = {3};
  good.max_blocks_per_seq = 1;
  good.slot_mapping = {48, 49};
  good.logits_indices = {1};
  Logits out;
  ASSERT_TRUE((*r)->Forward(good, &out).ok());
  Batch bad = good;
  bad.input_ids[1] = 5000;
  auto st = (*r)->Forward(bad, &out);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("batch.input_ids[1]"), std::string::npos) << st.message();
  bad = good;
  bad.positions[1] = 4096;  // past max_position_embeddings: the RoPE table ends there
  st = (*r)->Forward(bad, &out);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("batch.positions[1]"), std::string::npos) << st.message();
  EXPECT_TRUE((*r)->Forward(good, &out).ok());
}

// These run everywhere: option errors come before any device work.
TEST(CudaRunner, OptionErrorsNameTheField) {
  auto st =
      CudaModelRunner::Create({.model_dir = "/nonexistent", .device = "cuda", .dtype = "float32"})
          .status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("dtype"), std::string::npos) << st.message();
  st = CudaModelRunner::Create({.model_dir = "/nonexistent", .device = "cuda:x", .dtype = "bf16"})
           .status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("device"), std::string::npos) << st.message();
  st = CudaModelRunner::Create({.model_dir = "/nonexistent", .device = "cuda", .dtype = "bfloat16"})
           .status();
  if (!CudaDeviceAvailable()) {
    EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(st.message().find("no CUDA device"), std::string::npos) << st.message();
  } else {
    EXPECT_FALSE(st.ok());  // the directory does not exist
  }
}

TEST(CudaRunner, RejectsHeadDimsTheKernelsLack) {
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  const auto cfg = Config("llama", 48);  // a multiple of 16, but no kernel instance
  const std::string dir = TempDir("hd");
  ASSERT_TRUE(models::WriteRandomCheckpoint(dir, cfg, {.seed = 1}).ok());
  auto st =
      CudaModelRunner::Create({.model_dir = dir, .device = "cuda", .dtype = "bfloat16"}).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("head_dim 48"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("16, 32, 64, 80, 96 and 128"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace muse::runtime
