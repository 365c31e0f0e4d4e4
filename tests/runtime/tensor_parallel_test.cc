// Tensor parallelism on the CPU kernels (issue 20): LlamaCpuModel sharded over 2 (and 3) ranks
// connected by Gloo, ranks as threads, against the same checkpoint on one rank. A greedy run of
// three sequences with chunked prefill, a prefix-cache hit (a sequence reading another's KV blocks
// and prefilling only its suffix) and a preemption (a sequence recomputed into fresh blocks), then
// 64 decode steps: logits within 1e-5 (relative to the row's largest logit; the all-reduces change
// the summation order, so not bit-exact), the same greedy ids, and every rank with the same bits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cpu/packed_gemm.h"
#include "kernels/kv_layout.h"
#include "models/batch_codec.h"
#include "models/checkpoint.h"
#include "models/llama/llama_cpu_model.h"
#include "models/testing/random_checkpoint.h"
#include "src/collective/gloo_communicator.h"
#include "tests/runtime/test_configs.h"

namespace muse {
namespace {

using models::Batch;
using models::ModelConfig;
constexpr int kBlock = kernels::kKvBlockSize;

struct Trace {
  std::vector<std::vector<float>> logits;  // per step, [rows, vocab]
  std::vector<std::vector<int32_t>> ids;   // per step, the greedy id of each row
};

// Paged KV caches of one model instance: `kv_heads` heads per token.
struct Caches {
  std::vector<std::vector<float>> k, v;
  std::vector<float*> kp, vp;
  Caches(const ModelConfig& c, int64_t kv_heads, int pool) {
    const int64_t n = static_cast<int64_t>(pool) * kBlock * kv_heads * c.head_dim;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      // Poisoned, so a slot read before it is written shows up as a mismatch.
      k.emplace_back(n, 1e3f);
      v.emplace_back(n, -1e3f);
    }
    for (auto& x : k) kp.push_back(x.data());
    for (auto& x : v) vp.push_back(x.data());
  }
};

using ForwardFn = std::function<absl::Status(const Batch&, float*)>;

// The scheduler's decisions written out by hand: A (37-token prompt, prefilled in chunks of 20 and
// 17), B (5 tokens), C (A's first 32 tokens, i.e. two full KV blocks shared with A, plus 9 of its
// own: only those 9 are prefilled); at decode step 20 B is preempted and recomputed (prompt and
// generated tokens prefilled into fresh blocks in one step). Greedy: each step's ids come from this
// run's own logits.
Trace RunGreedy(const ModelConfig& c, int pool, const ForwardFn& forward, int decode_steps) {
  std::mt19937 rng(5);
  std::vector<int32_t> free(pool);
  std::iota(free.begin(), free.end(), 0);
  std::shuffle(free.begin(), free.end(), rng);
  auto take_block = [&] {
    const int32_t b = free.back();
    free.pop_back();
    return b;
  };
  struct Seq {
    std::vector<int32_t> tokens;  // prompt, then generated
    std::vector<int32_t> blocks;
    int done = 0;  // tokens whose KV is cached
  };
  std::vector<Seq> seqs(3);
  for (int i = 0; i < 37; ++i) seqs[0].tokens.push_back(3 + rng() % (c.vocab_size - 3));
  for (int i = 0; i < 5; ++i) seqs[1].tokens.push_back(3 + rng() % (c.vocab_size - 3));
  seqs[2].tokens.assign(seqs[0].tokens.begin(), seqs[0].tokens.begin() + 32);
  for (int i = 0; i < 9; ++i) seqs[2].tokens.push_back(3 + rng() % (c.vocab_size - 3));
  const int max_len = 41 + decode_steps + 1;
  const int max_blocks = (max_len + kBlock - 1) / kBlock;

  Trace trace;
  // One step: seq s gets n new tokens (n = 0: not in this step).
  auto step = [&](const std::vector<int>& take) {
    Batch b;
    b.max_blocks_per_seq = max_blocks;
    b.query_start_loc.push_back(0);
    std::vector<int> row_seq;
    for (int s = 0; s < 3; ++s) {
      if (take[s] == 0) continue;
      Seq& q = seqs[s];
      while (static_cast<int>(q.blocks.size()) * kBlock < q.done + take[s]) {
        q.blocks.push_back(take_block());
      }
      for (int i = 0; i < take[s]; ++i) {
        const int p = q.done + i;
        b.input_ids.push_back(q.tokens[p]);
        b.positions.push_back(p);
        b.slot_mapping.push_back(static_cast<int64_t>(q.blocks[p / kBlock]) * kBlock + p % kBlock);
      }
      q.done += take[s];
      b.query_start_loc.push_back(static_cast<int32_t>(b.input_ids.size()));
      b.seq_lens.push_back(q.done);
      for (int j = 0; j < max_blocks; ++j) {
        b.block_tables.push_back(j < static_cast<int>(q.blocks.size()) ? q.blocks[j] : -1);
      }
      // A row only once the prompt is complete (a mid-prompt chunk samples nothing).
      if (q.done == static_cast<int>(q.tokens.size())) {
        b.logits_indices.push_back(static_cast<int32_t>(b.input_ids.size()) - 1);
        row_seq.push_back(s);
      }
    }
    std::vector<float> logits(b.logits_indices.size() * c.vocab_size);
    const absl::Status st = forward(b, logits.data());
    EXPECT_TRUE(st.ok()) << st;
    std::vector<int32_t> ids;
    for (size_t r = 0; r < row_seq.size(); ++r) {
      const float* row = logits.data() + r * c.vocab_size;
      const int32_t id = static_cast<int32_t>(std::max_element(row, row + c.vocab_size) - row);
      ids.push_back(id);
      seqs[row_seq[r]].tokens.push_back(id);
    }
    trace.logits.push_back(std::move(logits));
    trace.ids.push_back(std::move(ids));
  };
  step({20, 5, 0});  // A's first chunk, B's whole prompt
  step({17, 1, 0});  // A's second chunk
  // C: a prefix-cache hit on A's first two blocks, then its own 9 tokens.
  seqs[2].blocks = {seqs[0].blocks[0], seqs[0].blocks[1]};
  seqs[2].done = 32;
  step({1, 1, 9});
  for (int i = 0; i < decode_steps; ++i) {
    if (i == 20) {  // preempt B: recompute everything it has into fresh blocks
      seqs[1].blocks.clear();
      seqs[1].done = 0;
      step({1, static_cast<int>(seqs[1].tokens.size()), 1});
      continue;
    }
    step({1, 1, 1});
  }
  return trace;
}

void WriteModel(const std::string& dir, const ModelConfig& c) {
  ASSERT_TRUE(models::WriteRandomCheckpoint(dir, c, {.seed = 23}).ok());
}

// The greedy run on one rank, and on `size` ranks as threads; compares them.
void ExpectTensorParallelMatches(const ModelConfig& c, int size, const std::string& name) {
  const std::string dir = testing::MakeTempDir("tp-" + name);
  WriteModel(dir, c);
  auto ck = models::Checkpoint::Open(dir);
  ASSERT_TRUE(ck.ok()) << ck.status();
  const int pool = 24, steps = 64;

  auto ref = models::LlamaCpuModel::Load(**ck, "", 1);
  ASSERT_TRUE(ref.ok()) << ref.status();
  Caches ref_kv(c, c.num_key_value_heads, pool);
  const Trace want = RunGreedy(
      c, pool,
      [&](const Batch& b, float* out) { return (*ref)->Forward(b, ref_kv.kp, ref_kv.vp, out); },
      steps);

  std::vector<Trace> got(size);
  const std::string store = dir + "/store";
  std::vector<std::thread> ranks;
  for (int r = 0; r < size; ++r) {
    ranks.emplace_back([&, r] {
      collective::GlooOptions o;
      o.rank = r;
      o.size = size;
      o.store_dir = store;
      auto comm = collective::ConnectGloo(o);
      ASSERT_TRUE(comm.ok()) << comm.status();
      auto m = models::LlamaCpuModel::Load(**ck, "", 1, comm->get());
      ASSERT_TRUE(m.ok()) << m.status();
      Caches kv(c, (*m)->num_local_kv_heads(), pool);
      got[r] = RunGreedy(
          c, pool, [&](const Batch& b, float* out) { return (*m)->Forward(b, kv.kp, kv.vp, out); },
          steps);
    });
  }
  for (auto& t : ranks) t.join();
  if (::testing::Test::HasFatalFailure()) return;

  ASSERT_EQ(got[0].ids.size(), want.ids.size());
  double worst = 0;
  for (size_t s = 0; s < want.ids.size(); ++s) {
    ASSERT_EQ(got[0].ids[s], want.ids[s]) << name << ": greedy ids differ at step " << s;
    const std::vector<float>& a = got[0].logits[s];
    const std::vector<float>& e = want.logits[s];
    ASSERT_EQ(a.size(), e.size());
    for (size_t row = 0; row < e.size() / c.vocab_size; ++row) {
      float scale = 0, diff = 0;
      for (int64_t v = 0; v < c.vocab_size; ++v) {
        scale = std::max(scale, std::fabs(e[row * c.vocab_size + v]));
        diff = std::max(diff, std::fabs(a[row * c.vocab_size + v] - e[row * c.vocab_size + v]));
      }
      ASSERT_GT(scale, 0.0f);
      worst = std::max(worst, static_cast<double>(diff / scale));
      ASSERT_LE(diff / scale, 1e-5) << name << ": step " << s << " row " << row;
    }
    for (int r = 1; r < size; ++r) {
      ASSERT_EQ(0, std::memcmp(got[r].logits[s].data(), a.data(), a.size() * sizeof(float)))
          << name << ": rank " << r << " logits differ from rank 0 at step " << s;
    }
  }
  std::printf("%s, %d ranks: %zu steps, worst relative logit error %.3g\n", name.c_str(), size,
              want.ids.size(), worst);
}

#define REQUIRE_CPU_KERNELS() \
  if (!kernels::cpu::PackedGemmSupported()) GTEST_SKIP() << "LlamaCpuModel needs AVX2 + FMA"

TEST(TensorParallelCpu, LlamaTiedGqaTwoRanks) {
  REQUIRE_CPU_KERNELS();
  ExpectTensorParallelMatches(testing::SmallConfig("llama"), 2, "llama");
}

TEST(TensorParallelCpu, Qwen2BiasesTwoRanks) {
  REQUIRE_CPU_KERNELS();
  ExpectTensorParallelMatches(testing::SmallConfig("qwen2"), 2, "qwen2");
}

TEST(TensorParallelCpu, MistralSlidingWindowTwoRanks) {
  REQUIRE_CPU_KERNELS();
  ExpectTensorParallelMatches(testing::SmallConfig("mistral"), 2, "mistral");
}

TEST(TensorParallelCpu, LlamaAttentionBiasAddedOnceTwoRanks) {
  REQUIRE_CPU_KERNELS();
  ExpectTensorParallelMatches(testing::SmallConfig("llama_bias"), 2, "llama_bias");
}

// Six query heads and one KV head over two ranks: each rank holds (replicates) the KV head.
TEST(TensorParallelCpu, FewerKvHeadsThanRanksReplicates) {
  REQUIRE_CPU_KERNELS();
  ModelConfig c = testing::SmallConfig("qwen2");
  c.num_key_value_heads = 1;
  ExpectTensorParallelMatches(c, 2, "mqa");
}

// Three ranks: MHA (6 KV heads), intermediate 201 -> 198 so it splits, vocab 397 padded to 3 x 133.
TEST(TensorParallelCpu, MhaThreeRanks) {
  REQUIRE_CPU_KERNELS();
  ModelConfig c = testing::SmallConfig("mha");
  c.intermediate_size = 198;
  ExpectTensorParallelMatches(c, 3, "mha3");
}

TEST(TensorParallelCpu, ShapesThatDoNotSplitNameTheKeyAndRank) {
  ModelConfig c = testing::SmallConfig("llama");  // 6 heads, 2 KV heads, intermediate 200
  auto s = models::MakeTensorParallelShard(c, 1, 4);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("num_attention_heads 6"), std::string::npos) << s.status();
  EXPECT_NE(s.status().message().find("rank 1"), std::string::npos) << s.status();
  s = models::MakeTensorParallelShard(c, 0, 3);  // 6 heads split, intermediate 200 does not
  EXPECT_NE(s.status().message().find("intermediate_size 200"), std::string::npos) << s.status();
  c.intermediate_size = 198;
  s = models::MakeTensorParallelShard(c, 2, 3);  // 2 KV heads neither divide nor split over 3
  EXPECT_NE(s.status().message().find("num_key_value_heads 2"), std::string::npos) << s.status();
  c.num_key_value_heads = 6;
  s = models::MakeTensorParallelShard(c, 2, 3);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->q_head0, 4);
  EXPECT_EQ(s->kv_head0, 4);
  EXPECT_EQ(s->inter0, 132);
  EXPECT_EQ(s->vocab_per_rank, 133);
  EXPECT_EQ(s->vocab0, 266);
  EXPECT_EQ(s->vocab_rows, 131);
}

// The batch rank 0 broadcasts: every field and the override rows survive; every cut of the
// message, trailing bytes and a wrong magic are errors, never reads past the end.
TEST(TensorParallelBatchCodec, RoundTripsAndRejectsCutMessages) {
  const int64_t H = 5;
  std::vector<float> rows_a = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, rows_b = {-1, -2, -3, -4, -5};
  Batch b;
  b.input_ids = {7, 8, 9, 10};
  b.positions = {0, 1, 2, 40};
  b.query_start_loc = {0, 3, 4};
  b.seq_lens = {3, 41};
  b.max_blocks_per_seq = 3;
  b.block_tables = {4, -1, -1, 0, 2, 1};
  b.slot_mapping = {64, 65, 66, 40};
  b.logits_indices = {2, 3};
  b.embedding_overrides = {{0, 2, rows_a.data()}, {3, 1, rows_b.data()}};
  const std::string m = models::EncodeBatch(b, H);
  models::DecodedBatch d;
  ASSERT_TRUE(models::DecodeBatch(m, H, &d).ok());
  EXPECT_EQ(d.batch.input_ids, b.input_ids);
  EXPECT_EQ(d.batch.positions, b.positions);
  EXPECT_EQ(d.batch.query_start_loc, b.query_start_loc);
  EXPECT_EQ(d.batch.seq_lens, b.seq_lens);
  EXPECT_EQ(d.batch.block_tables, b.block_tables);
  EXPECT_EQ(d.batch.max_blocks_per_seq, 3);
  EXPECT_EQ(d.batch.slot_mapping, b.slot_mapping);
  EXPECT_EQ(d.batch.logits_indices, b.logits_indices);
  ASSERT_EQ(d.batch.embedding_overrides.size(), 2u);
  EXPECT_EQ(d.batch.embedding_overrides[1].token_index, 3);
  EXPECT_EQ(std::vector<float>(d.batch.embedding_overrides[0].data,
                               d.batch.embedding_overrides[0].data + 2 * H),
            rows_a);
  EXPECT_EQ(std::vector<float>(d.batch.embedding_overrides[1].data,
                               d.batch.embedding_overrides[1].data + H),
            rows_b);
  for (size_t cut = 0; cut < m.size(); ++cut) {
    EXPECT_EQ(models::DecodeBatch(m.substr(0, cut), H, &d).code(),
              absl::StatusCode::kInvalidArgument)
        << "cut at " << cut;
  }
  EXPECT_EQ(models::DecodeBatch(m + "x", H, &d).code(), absl::StatusCode::kInvalidArgument);
  std::string wrong = m;
  wrong[0] ^= 1;
  EXPECT_NE(models::DecodeBatch(wrong, H, &d).message().find("magic"), std::string::npos);
  // A length that claims more than the message holds.
  std::string huge = m;
  const uint64_t n = uint64_t{1} << 60;
  std::memcpy(huge.data() + 4, &n, sizeof(n));
  EXPECT_NE(models::DecodeBatch(huge, H, &d).message().find("input_ids"), std::string::npos);
}

}  // namespace
}  // namespace muse
