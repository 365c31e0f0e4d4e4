// The paged runtime against a dense reference forward written plainly in ATen (no paging, no
// cache): random checkpoints of each architecture, prompts split into random chunks mixed across
// sequences in each step, shuffled block tables, odd lengths.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "kernels/cpu/packed_gemm.h"
#include "models/checkpoint.h"
#include "models/testing/random_checkpoint.h"
#include "models/testing/random_llava_checkpoint.h"
#include "src/runtime/cpu_model_runner.h"
#include "tests/runtime/test_checkpoints.h"

namespace muse {
namespace {

using kernels::kKvBlockSize;
using models::Batch;

// ---- Dense reference ------------------------------------------------------------------------

at::Tensor W(const models::Checkpoint& ck, const std::string& name) {
  const models::TensorView* v = ck.Find(name);
  EXPECT_NE(v, nullptr) << name;
  return at::from_blob(const_cast<void*>(v->data), v->shape, at::kFloat).clone().to(at::kDouble);
}

std::vector<double> ReferenceInvFreq(const models::ModelConfig& c) {
  std::vector<double> inv;
  for (int64_t i = 0; i < c.head_dim; i += 2) {
    // HF computes base ** (i / d) in float32; mirror that rounding.
    float f = 1.0f / std::pow(static_cast<float>(c.rope_theta),
                              static_cast<float>(i) / static_cast<float>(c.head_dim));
    double x = f;
    if (c.rope_scaling.type == "llama3") {
      const auto& r = c.rope_scaling;
      const double old_len = r.original_max_position_embeddings;
      const double wavelen = 2 * M_PI / x;
      if (wavelen > old_len / r.low_freq_factor) {
        x = x / r.factor;
      } else if (wavelen >= old_len / r.high_freq_factor) {
        const double s =
            (old_len / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
        x = (1 - s) * x / r.factor + s * x;
      }
    }
    inv.push_back(static_cast<float>(x));
  }
  return inv;
}

// Logits [L, V] (double) of every position of one sequence.
at::Tensor DenseForward(const models::Checkpoint& ck, const std::vector<int32_t>& ids) {
  const auto& c = ck.config();
  const int64_t L = ids.size(), nH = c.num_attention_heads, nKV = c.num_key_value_heads;
  const int64_t D = c.head_dim;
  auto rms = [&](const at::Tensor& x, const at::Tensor& w) {
    return x / at::sqrt(x.pow(2).mean({-1}, true) + c.rms_norm_eps) * w;
  };
  at::Tensor embed = W(ck, "model.embed_tokens.weight");
  at::Tensor h = embed.index_select(0, at::tensor(std::vector<int64_t>(ids.begin(), ids.end())));
  auto inv = ReferenceInvFreq(c);
  at::Tensor cos = at::empty({L, D}, at::kDouble), sin = at::empty({L, D}, at::kDouble);
  for (int64_t p = 0; p < L; ++p) {
    for (int64_t i = 0; i < D / 2; ++i) {
      const float ang = static_cast<float>(p) * static_cast<float>(inv[i]);
      cos[p][i] = cos[p][i + D / 2] = std::cos(ang);
      sin[p][i] = sin[p][i + D / 2] = std::sin(ang);
    }
  }
  auto rope = [&](const at::Tensor& x) {  // x [L, n, D]
    at::Tensor rot = at::cat({-x.narrow(2, D / 2, D / 2), x.narrow(2, 0, D / 2)}, 2);
    return x * cos.unsqueeze(1) + rot * sin.unsqueeze(1);
  };
  at::Tensor mask = at::zeros({L, L}, at::kDouble);
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = 0; j < L; ++j)
      if (j > i || (c.sliding_window > 0 && j <= i - c.sliding_window))
        mask[i][j] = -std::numeric_limits<double>::infinity();
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    at::Tensor x = rms(h, W(ck, p + "input_layernorm.weight"));
    at::Tensor q = at::matmul(x, W(ck, p + "self_attn.q_proj.weight").t());
    at::Tensor k = at::matmul(x, W(ck, p + "self_attn.k_proj.weight").t());
    at::Tensor v = at::matmul(x, W(ck, p + "self_attn.v_proj.weight").t());
    if (c.attention_bias) {
      q = q + W(ck, p + "self_attn.q_proj.bias");
      k = k + W(ck, p + "self_attn.k_proj.bias");
      v = v + W(ck, p + "self_attn.v_proj.bias");
    }
    q = rope(q.view({L, nH, D}));
    k = rope(k.view({L, nKV, D})).repeat_interleave(nH / nKV, 1);
    v = v.view({L, nKV, D}).repeat_interleave(nH / nKV, 1);
    at::Tensor s = at::einsum("qhd,khd->hqk", {q, k}) / std::sqrt(static_cast<double>(D)) + mask;
    at::Tensor o = at::einsum("hqk,khd->qhd", {at::softmax(s, -1), v}).reshape({L, nH * D});
    at::Tensor attn_out = at::matmul(o, W(ck, p + "self_attn.o_proj.weight").t());
    if (c.arch == models::Arch::kLlama && c.attention_bias) {  // HF LlamaAttention: o_proj bias too
      attn_out = attn_out + W(ck, p + "self_attn.o_proj.bias");
    }
    h = h + attn_out;
    x = rms(h, W(ck, p + "post_attention_layernorm.weight"));
    at::Tensor g = at::matmul(x, W(ck, p + "mlp.gate_proj.weight").t());
    at::Tensor u = at::matmul(x, W(ck, p + "mlp.up_proj.weight").t());
    h = h + at::matmul(g * at::sigmoid(g) * u, W(ck, p + "mlp.down_proj.weight").t());
  }
  h = rms(h, W(ck, "model.norm.weight"));
  at::Tensor head = c.tie_word_embeddings ? embed : W(ck, "lm_head.weight");
  return at::matmul(h, head.t());
}

double RelErr(const at::Tensor& got, const at::Tensor& ref) {
  return (got.to(at::kDouble) - ref).abs().max().item<double>() / ref.abs().max().item<double>();
}

// ---- Paged driver ---------------------------------------------------------------------------

struct Seq {
  std::vector<int32_t> ids;
  std::vector<int32_t> blocks;  // block table
  int64_t done = 0;             // tokens already in the cache
};

// Feeds all sequences through the runner in random interleaved chunks; returns per-sequence
// logits [L, V] (float) for every position.
std::vector<at::Tensor> RunPaged(runtime::ModelRunner& runner, std::vector<Seq>& seqs,
                                 std::mt19937& rng, bool decode_only = false) {
  const int64_t V = runner.config().vocab_size;
  std::vector<at::Tensor> out;
  for (auto& s : seqs) out.push_back(at::full({(int64_t)s.ids.size(), V}, NAN, at::kFloat));
  int max_blocks = 0;
  for (auto& s : seqs) max_blocks = std::max<int>(max_blocks, s.blocks.size());
  while (true) {
    Batch b;
    b.max_blocks_per_seq = max_blocks + 1;  // wider than needed: padding must be ignored
    b.query_start_loc.push_back(0);
    std::vector<std::pair<int, int64_t>> rows;  // (seq, position)
    for (size_t i = 0; i < seqs.size(); ++i) {
      Seq& s = seqs[i];
      const int64_t left = s.ids.size() - s.done;
      if (left == 0 || rng() % 4 == 0) continue;  // sometimes sit a step out
      int64_t n = decode_only ? 1 : 1 + rng() % left;
      if (rng() % 3 == 0) n = 1;
      for (int64_t j = 0; j < n; ++j) {
        const int64_t p = s.done + j;
        b.input_ids.push_back(s.ids[p]);
        b.positions.push_back(p);
        b.slot_mapping.push_back(s.blocks[p / kernels::kKvBlockSize] * kernels::kKvBlockSize +
                                 p % kernels::kKvBlockSize);
        b.logits_indices.push_back(b.input_ids.size() - 1);
        rows.push_back({(int)i, p});
      }
      s.done += n;
      b.seq_lens.push_back(s.done);
      b.query_start_loc.push_back(b.input_ids.size());
      for (int j = 0; j < b.max_blocks_per_seq; ++j)
        b.block_tables.push_back(j < (int)s.blocks.size() ? s.blocks[j] : -1);
    }
    if (b.input_ids.empty()) {
      bool all_done = true;
      for (auto& s : seqs) all_done &= s.done == (int64_t)s.ids.size();
      if (all_done) break;
      continue;
    }
    models::Logits logits;
    auto st = runner.Forward(b, &logits);
    EXPECT_TRUE(st.ok()) << st;
    if (!st.ok()) break;
    for (size_t r = 0; r < rows.size(); ++r) {
      at::Tensor row = at::from_blob(const_cast<float*>(logits.row(r)), {V}, at::kFloat);
      out[rows[r].first][rows[r].second].copy_(row);
    }
  }
  return out;
}

// Assigns each sequence blocks from a shuffled pool.
void AssignBlocks(std::vector<Seq>& seqs, int64_t pool, std::mt19937& rng) {
  std::vector<int32_t> free(pool);
  std::iota(free.begin(), free.end(), 0);
  std::shuffle(free.begin(), free.end(), rng);
  for (auto& s : seqs) {
    const int64_t nb = (s.ids.size() + kernels::kKvBlockSize - 1) / kernels::kKvBlockSize;
    for (int64_t j = 0; j < nb; ++j) {
      s.blocks.push_back(free.back());
      free.pop_back();
    }
  }
}

// (architecture, backend): every architecture through both CPU implementations of the step.
class PagedVsDense : public ::testing::TestWithParam<std::tuple<std::string, bool>> {};

TEST_P(PagedVsDense, LogitsMatchAtEveryPosition) {
  const auto [arch, muse_kernels] = GetParam();
  if (muse_kernels && !kernels::cpu::PackedGemmSupported()) GTEST_SKIP() << "no AVX2 + FMA";
  const std::string dir = testing::MakeTempDir("muse-rt-" + arch);
  const auto cfg = testing::SmallConfig(arch);
  testing::WriteRandomCheckpoint(dir, cfg, /*seed=*/7);
  auto ck = models::Checkpoint::Open(dir);
  ASSERT_TRUE(ck.ok()) << ck.status();
  auto runner = runtime::CpuModelRunner::Create(
      {.model_dir = dir, .num_threads = 3, .cpu_kernels = muse_kernels, .num_kv_blocks = 64});
  ASSERT_TRUE(runner.ok()) << runner.status();
  EXPECT_STREQ((*runner)->backend(), muse_kernels ? "muse-cpu" : "aten");

  std::mt19937 rng(1234);
  std::vector<Seq> seqs;
  for (int len : {1, 7, 83, 200}) {
    Seq s;
    for (int i = 0; i < len; ++i) s.ids.push_back(rng() % cfg.vocab_size);
    seqs.push_back(std::move(s));
  }
  AssignBlocks(seqs, (*runner)->num_kv_blocks(), rng);
  auto got = RunPaged(**runner, seqs, rng);
  for (size_t i = 0; i < seqs.size(); ++i) {
    at::Tensor ref = DenseForward(**ck, seqs[i].ids);
    ASSERT_FALSE(at::isnan(got[i]).any().item<bool>()) << "sequence " << i << " missing rows";
    EXPECT_LE(RelErr(got[i], ref), 1e-5) << arch << " sequence of length " << seqs[i].ids.size();
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, PagedVsDense,
                         ::testing::Combine(::testing::Values("llama", "mistral", "qwen2", "mha",
                                                              "llama_bias"),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           return std::get<0>(info.param) +
                                  (std::get<1>(info.param) ? "_muse_cpu" : "_aten");
                         });

TEST(Runtime, IncrementalDecodeEqualsOnePrefill) {
  const std::string dir = testing::MakeTempDir("muse-rt-incr");
  const auto cfg = testing::SmallConfig("qwen2");
  testing::WriteRandomCheckpoint(dir, cfg, 3);
  auto runner = runtime::CpuModelRunner::Create({.model_dir = dir, .num_kv_blocks = 32});
  ASSERT_TRUE(runner.ok()) << runner.status();
  std::mt19937 rng(99);
  Seq s;
  for (int i = 0; i < 61; ++i) s.ids.push_back(rng() % cfg.vocab_size);
  std::vector<Seq> one_shot{s}, step_by_step{s};
  AssignBlocks(one_shot, 32, rng);
  step_by_step[0].blocks = one_shot[0].blocks;  // same blocks, rewritten by the second run

  // One prefill of everything.
  Batch b;
  b.max_blocks_per_seq = one_shot[0].blocks.size();
  b.query_start_loc = {0, (int)s.ids.size()};
  b.seq_lens = {(int)s.ids.size()};
  b.block_tables = one_shot[0].blocks;
  for (int p = 0; p < (int)s.ids.size(); ++p) {
    b.input_ids.push_back(s.ids[p]);
    b.positions.push_back(p);
    b.slot_mapping.push_back(one_shot[0].blocks[p / kernels::kKvBlockSize] * kernels::kKvBlockSize +
                             p % kernels::kKvBlockSize);
    b.logits_indices.push_back(p);
  }
  models::Logits full;
  ASSERT_TRUE((*runner)->Forward(b, &full).ok());
  auto inc = RunPaged(**runner, step_by_step, rng, /*decode_only=*/true);
  at::Tensor full_t = at::from_blob(full.data.data(), {full.num_rows, full.vocab_size}, at::kFloat);
  EXPECT_LE(RelErr(inc[0], full_t.to(at::kDouble)), 1e-5);
}

TEST(Runtime, Bf16IsCloseToFp32) {
  const std::string dir = testing::MakeTempDir("muse-rt-bf16");
  const auto cfg = testing::SmallConfig("llama");
  testing::WriteRandomCheckpoint(dir, cfg, 5);
  auto r32 = runtime::CpuModelRunner::Create({.model_dir = dir, .num_kv_blocks = 16});
  auto r16 =
      runtime::CpuModelRunner::Create({.model_dir = dir, .dtype = "bfloat16", .num_kv_blocks = 16});
  ASSERT_TRUE(r32.ok() && r16.ok());
  std::mt19937 rng(5);
  std::vector<Seq> a(1), c;
  for (int i = 0; i < 40; ++i) a[0].ids.push_back(rng() % cfg.vocab_size);
  AssignBlocks(a, 16, rng);
  c = a;
  std::mt19937 r1(1), r2(1);
  auto x = RunPaged(**r32, a, r1);
  auto y = RunPaged(**r16, c, r2);
  const double err = RelErr(y[0], x[0].to(at::kDouble));
  EXPECT_LT(err, 0.05);  // bf16 has 8 mantissa bits; 3 layers keep the drift to a few percent
  EXPECT_GT(err, 0.0);   // and it really ran in bf16
}

TEST(Runtime, MalformedBatchesAreRejectedWithTheFieldNamed) {
  const std::string dir = testing::MakeTempDir("muse-rt-bad");
  const auto cfg = testing::SmallConfig("mha");
  testing::WriteRandomCheckpoint(dir, cfg, 1);
  auto runner = runtime::CpuModelRunner::Create({.model_dir = dir, .num_kv_blocks = 4});
  ASSERT_TRUE(runner.ok());
  auto good = [] {
    Batch b;
    b.input_ids = {5, 6};
    b.positions = {0, 1};
    b.query_start_loc = {0, 2};
    b.seq_lens = {2};
    b.block_tables = {3};
    b.max_blocks_per_seq = 1;
    b.slot_mapping = {48, 49};
    b.logits_indices = {1};
    return b;
  };
  models::Logits out;
  ASSERT_TRUE((*runner)->Forward(good(), &out).ok());
  struct Case {
    std::function<void(Batch&)> mutate;
    std::string field;
  };
  std::vector<Case> cases = {
      {[](Batch& b) { b.input_ids[1] = 397; }, "batch.input_ids[1]"},
      {[](Batch& b) { b.slot_mapping[0] = 64; }, "batch.slot_mapping[0]"},
      {[](Batch& b) { b.block_tables[0] = 4; }, "batch.block_tables[0][0]"},
      {[](Batch& b) { b.seq_lens[0] = 1; }, "batch.seq_lens[0]"},
      {[](Batch& b) { b.seq_lens[0] = 17; }, "max_blocks_per_seq"},
      {[](Batch& b) { b.logits_indices = {2}; }, "batch.logits_indices[0]"},
      {[](Batch& b) { b.positions.pop_back(); }, "batch.positions"},
      {[](Batch& b) {
         b.query_start_loc = {0, 1};
       },
       "batch.query_start_loc"},
  };
  for (auto& c : cases) {
    Batch b = good();
    c.mutate(b);
    auto st = (*runner)->Forward(b, &out);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_NE(st.message().find(c.field), std::string::npos) << st.message();
  }
  // The runner is still usable afterwards.
  EXPECT_TRUE((*runner)->Forward(good(), &out).ok());
}

// A LLaVA directory serves its "language_model." decoder: same logits as a text-only directory
// holding the same decoder weights.
TEST(Runtime, LoadsTheDecoderOfALlavaDirectory) {
  auto decoder = testing::SmallConfig("llama");
  decoder.vocab_size = 500;  // room for the image token
  auto llava = models::llava::LlavaPreset("llava-tiny", decoder);
  ASSERT_TRUE(llava.ok()) << llava.status();
  const std::string llava_dir = testing::MakeTempDir("muse-rt-llava");
  const std::string text_dir = testing::MakeTempDir("muse-rt-llava-text");
  models::RandomCheckpointOptions opts;
  opts.seed = 21;
  ASSERT_TRUE(models::llava::WriteRandomLlavaCheckpoint(
                  llava_dir, *llava, models::llava::PreprocessorFor(*llava), opts)
                  .ok());
  ASSERT_TRUE(models::WriteRandomCheckpoint(text_dir, llava->text, opts).ok());
  auto a = runtime::CreateModelRunner({.model_dir = llava_dir, .num_kv_blocks = 8});
  auto b = runtime::CreateModelRunner({.model_dir = text_dir, .num_kv_blocks = 8});
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*a)->config().vocab_size, llava->text.vocab_size);
  Batch batch;
  batch.input_ids = {1, 77, 301, 42, 9};
  batch.positions = {0, 1, 2, 3, 4};
  batch.query_start_loc = {0, 5};
  batch.seq_lens = {5};
  batch.block_tables = {6};
  batch.max_blocks_per_seq = 1;
  batch.slot_mapping = {96, 97, 98, 99, 100};
  batch.logits_indices = {2, 4};
  models::Logits la, lb;
  ASSERT_TRUE((*a)->Forward(batch, &la).ok());
  ASSERT_TRUE((*b)->Forward(batch, &lb).ok());
  EXPECT_EQ(la.data, lb.data);
}

}  // namespace
}  // namespace muse
