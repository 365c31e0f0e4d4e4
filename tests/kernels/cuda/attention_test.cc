// Paged decode and prefill attention against a CPU reference, with shuffled block tables,
// NaN-poisoned unused cache slots and outputs, odd context lengths.
#include "kernels/cuda/attention.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <tuple>

#include "tests/kernels/cuda/test_util.h"

namespace muse::kernels::test {
namespace {

struct PagedKv {
  int num_seqs = 0, max_blocks = 0, num_blocks = 0, kv_heads = 0, head_dim = 0;
  std::vector<int32_t> seq_lens, block_tables;
  std::vector<float> k, v;  // [num_blocks * 16, kv_heads, head_dim]; NaN where unused
};

// Every sequence gets randomly chosen (shuffled) physical blocks; unused slots stay NaN.
PagedKv make_cache(const std::vector<int>& ctx, int kv_heads, int head_dim, DType dt,
                   std::mt19937& rng) {
  PagedKv c;
  c.num_seqs = static_cast<int>(ctx.size());
  c.kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.seq_lens.assign(ctx.begin(), ctx.end());
  int need = 0;
  for (int n : ctx) {
    need += (n + 15) / 16;
    c.max_blocks = std::max(c.max_blocks, (n + 15) / 16);
  }
  c.max_blocks += 1;  // trailing -1 entries
  c.num_blocks = need + 3;
  std::vector<int> ids(c.num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  c.block_tables.assign(static_cast<size_t>(c.num_seqs) * c.max_blocks, -1);
  const size_t row = static_cast<size_t>(kv_heads) * head_dim;
  c.k.assign(static_cast<size_t>(c.num_blocks) * 16 * row, NAN);
  c.v = c.k;
  int next = 0;
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (int s = 0; s < c.num_seqs; ++s) {
    for (int b = 0; b < (ctx[s] + 15) / 16; ++b) c.block_tables[s * c.max_blocks + b] = ids[next++];
    for (int t = 0; t < ctx[s]; ++t) {
      const size_t slot =
          static_cast<size_t>(c.block_tables[s * c.max_blocks + t / 16]) * 16 + t % 16;
      for (size_t i = 0; i < row; ++i) {
        c.k[slot * row + i] = round_to(u(rng), dt);
        c.v[slot * row + i] = round_to(u(rng), dt);
      }
    }
  }
  return c;
}

// out[h] for one query at context index cq of sequence s. round_p: P rounded to dt before P·V
// (what a flash kernel does), normaliser in fp32, output rounded to dt.
void ref_query(const PagedKv& c, int s, int cq, const float* q, int heads, float scale, int window,
               bool lowp, DType dt, float* out) {
  const int D = c.head_dim, G = heads / c.kv_heads;
  const int lo = window > 0 ? std::max(0, cq - window + 1) : 0;
  std::vector<double> sc(cq + 1);
  for (int h = 0; h < heads; ++h) {
    const int kvh = h / G;
    double m = -INFINITY;
    for (int t = lo; t <= cq; ++t) {
      const size_t slot =
          static_cast<size_t>(c.block_tables[s * c.max_blocks + t / 16]) * 16 + t % 16;
      const float* k = &c.k[(slot * c.kv_heads + kvh) * D];
      double d = 0;
      for (int i = 0; i < D; ++i) d += double(q[h * D + i]) * k[i];
      sc[t] = d * scale;
      m = std::max(m, sc[t]);
    }
    std::vector<double> acc(D, 0.0);
    double l = 0;
    for (int t = lo; t <= cq; ++t) {
      const size_t slot =
          static_cast<size_t>(c.block_tables[s * c.max_blocks + t / 16]) * 16 + t % 16;
      const float* v = &c.v[(slot * c.kv_heads + kvh) * D];
      const double p = std::exp(sc[t] - m);
      l += p;
      const double pv = lowp ? round_to(static_cast<float>(p), dt) : p;
      for (int i = 0; i < D; ++i) acc[i] += pv * v[i];
    }
    for (int i = 0; i < D; ++i) {
      const float o = static_cast<float>(acc[i] / l);
      out[h * D + i] = lowp ? round_to(o, dt) : o;
    }
  }
}

struct DeviceCache {
  DeviceBuffer k, v, bt, lens;
  DeviceCache(const PagedKv& c, DType dt)
      : k(DeviceBuffer::from(encode(c.k, dt))),
        v(DeviceBuffer::from(encode(c.v, dt))),
        bt(DeviceBuffer::from(c.block_tables)),
        lens(DeviceBuffer::from(c.seq_lens)) {}
};

// ---------------- decode ----------------
struct DecodeCase {
  DType dt;
  int head_dim;
  int heads, kv_heads;
  int window;
};

void run_decode(const DecodeCase& dc, const std::vector<int>& ctx) {
  std::mt19937 rng(2024 + dc.head_dim + dc.heads * 7 + dc.window);
  const int D = dc.head_dim;
  PagedKv c = make_cache(ctx, dc.kv_heads, D, dc.dt, rng);
  const int S = c.num_seqs;
  auto q = random_values(static_cast<size_t>(S) * dc.heads * D, dc.dt, rng, -2.f, 2.f);
  const float scale = 1.f / std::sqrt(static_cast<float>(D));
  std::vector<float> ref32(q.size()), lowp(q.size());
  for (int s = 0; s < S; ++s) {
    ref_query(c, s, ctx[s] - 1, &q[s * dc.heads * D], dc.heads, scale, dc.window, false, dc.dt,
              &ref32[s * dc.heads * D]);
    ref_query(c, s, ctx[s] - 1, &q[s * dc.heads * D], dc.heads, scale, dc.window, true, dc.dt,
              &lowp[s * dc.heads * D]);
  }
  DeviceCache dcache(c, dc.dt);
  auto dq = DeviceBuffer::from(encode(q, dc.dt));
  DeviceBuffer dout(q.size() * dtype_size(dc.dt));
  dout.poison();
  PagedDecodeParams p{dout.get(),
                      dq.get(),
                      dcache.k.get(),
                      dcache.v.get(),
                      dcache.bt.get<int32_t>(),
                      dcache.lens.get<int32_t>()};
  p.num_seqs = S;
  p.num_heads = dc.heads;
  p.num_kv_heads = dc.kv_heads;
  p.head_dim = D;
  p.max_blocks_per_seq = c.max_blocks;
  p.max_seq_len = *std::max_element(ctx.begin(), ctx.end());
  p.scale = scale;
  p.sliding_window = dc.window;
  p.dtype = dc.dt;
  DeviceBuffer ws(paged_decode_workspace_size(p));
  ws.poison();
  p.workspace = ws.get();
  p.workspace_bytes = ws.bytes();
  CUDA_OK(launch_paged_decode_attention(p, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  expect_within_noise(decode(dout.to_host<uint8_t>(), dc.dt), ref32, lowp, default_atol(dc.dt),
                      "decode");
}

class DecodeTest : public ::testing::TestWithParam<std::tuple<DType, int>> {};

TEST_P(DecodeTest, OddContextsShuffledBlocks) {
  MUSE_REQUIRE_DEVICE();
  const auto [dt, D] = GetParam();
  run_decode({dt, D, 8, 2, 0}, {1, 7, 83, 769, 4099});
}

TEST_P(DecodeTest, SingleLongSequenceSplitK) {
  MUSE_REQUIRE_DEVICE();
  const auto [dt, D] = GetParam();
  run_decode({dt, D, 8, 2, 0}, {4099});
}

INSTANTIATE_TEST_SUITE_P(Kernels, DecodeTest,
                         ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16,
                                                              DType::kBFloat16),
                                            ::testing::Values(16, 32, 64, 80, 96, 128)));

TEST(DecodeGqa, GroupSizes) {
  MUSE_REQUIRE_DEVICE();
  run_decode({DType::kBFloat16, 128, 4, 4, 0}, {83, 769});    // MHA
  run_decode({DType::kBFloat16, 128, 32, 8, 0}, {7, 2050});   // Llama-8B shape
  run_decode({DType::kBFloat16, 128, 16, 1, 0}, {83, 1000});  // group 16 > kMaxGroup
  run_decode({DType::kFloat16, 64, 12, 4, 0}, {1, 600});      // group 3
  run_decode({DType::kBFloat16, 16, 4, 2, 0}, {1, 83, 600});  // muse-tiny heads
  run_decode({DType::kFloat16, 32, 9, 3, 0}, {5, 300});       // group 3 at D 32
  std::vector<int> many(40);                                  // enough CTAs: single partition
  for (int i = 0; i < 40; ++i) many[i] = 1 + (i * 37) % 500;
  run_decode({DType::kBFloat16, 128, 32, 8, 0}, many);
}

TEST(DecodeWindow, SlidingWindow) {
  MUSE_REQUIRE_DEVICE();
  run_decode({DType::kBFloat16, 128, 8, 2, 100}, {7, 83, 769, 4099});
  run_decode({DType::kFloat32, 64, 8, 2, 1}, {5, 700});
  run_decode({DType::kBFloat16, 32, 8, 2, 100}, {7, 83, 769});
  run_decode({DType::kFloat16, 16, 4, 1, 17}, {16, 33, 500});
}

// ---------------- prefill ----------------
struct PrefillCase {
  DType dt;
  int head_dim;
  int heads, kv_heads;
  int window;
};

void run_prefill(const PrefillCase& pc, const std::vector<int>& ctx, const std::vector<int>& qlen) {
  std::mt19937 rng(77 + pc.head_dim + pc.window);
  const int D = pc.head_dim, H = pc.heads;
  PagedKv c = make_cache(ctx, pc.kv_heads, D, pc.dt, rng);
  const int S = c.num_seqs;
  std::vector<int32_t> qsl(S + 1, 0);
  for (int s = 0; s < S; ++s) qsl[s + 1] = qsl[s] + qlen[s];
  const int T = qsl[S];
  auto q = random_values(static_cast<size_t>(T) * H * D, pc.dt, rng, -2.f, 2.f);
  const float scale = 1.f / std::sqrt(static_cast<float>(D));
  std::vector<float> ref32(q.size()), lowp(q.size());
  for (int s = 0; s < S; ++s)
    for (int j = 0; j < qlen[s]; ++j) {
      const size_t off = static_cast<size_t>(qsl[s] + j) * H * D;
      const int cq = ctx[s] - qlen[s] + j;
      ref_query(c, s, cq, &q[off], H, scale, pc.window, false, pc.dt, &ref32[off]);
      ref_query(c, s, cq, &q[off], H, scale, pc.window, true, pc.dt, &lowp[off]);
    }
  DeviceCache dcache(c, pc.dt);
  auto dq = DeviceBuffer::from(encode(q, pc.dt));
  auto dqsl = DeviceBuffer::from(qsl);
  DeviceBuffer dout(q.size() * dtype_size(pc.dt));
  dout.poison();
  PagedPrefillParams p{dout.get(),
                       dq.get(),
                       dcache.k.get(),
                       dcache.v.get(),
                       dqsl.get<int32_t>(),
                       dcache.lens.get<int32_t>(),
                       dcache.bt.get<int32_t>()};
  p.num_seqs = S;
  p.num_heads = H;
  p.num_kv_heads = pc.kv_heads;
  p.head_dim = D;
  p.max_blocks_per_seq = c.max_blocks;
  p.max_query_len = *std::max_element(qlen.begin(), qlen.end());
  p.scale = scale;
  p.sliding_window = pc.window;
  p.dtype = pc.dt;
  CUDA_OK(launch_paged_prefill_attention(p, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  expect_within_noise(decode(dout.to_host<uint8_t>(), pc.dt), ref32, lowp, default_atol(pc.dt),
                      "prefill");
}

class PrefillTest : public ::testing::TestWithParam<std::tuple<DType, int>> {};

TEST_P(PrefillTest, VarlenCausalWithCachedContext) {
  MUSE_REQUIRE_DEVICE();
  const auto [dt, D] = GetParam();
  // (context after step, new tokens): pure prefill, chunked prefill over a cache, decode-like.
  run_prefill({dt, D, 4, 2, 0}, {1, 7, 83, 769, 4099, 300}, {1, 7, 83, 769, 67, 1});
}

INSTANTIATE_TEST_SUITE_P(Kernels, PrefillTest,
                         ::testing::Combine(::testing::Values(DType::kFloat16, DType::kBFloat16),
                                            ::testing::Values(16, 32, 64, 80, 96, 128)));

TEST(PrefillGqa, GroupsAndWindow) {
  MUSE_REQUIRE_DEVICE();
  run_prefill({DType::kBFloat16, 128, 8, 1, 0}, {150, 83}, {130, 83});
  run_prefill({DType::kBFloat16, 128, 4, 2, 50}, {769, 200}, {100, 200});
  run_prefill({DType::kBFloat16, 16, 4, 2, 50}, {300, 130}, {70, 130});  // muse-tiny heads
  run_prefill({DType::kFloat16, 32, 6, 2, 0}, {150, 83}, {130, 20});
}

TEST(PrefillDtype, Fp32NotSupported) {
  MUSE_REQUIRE_DEVICE();
  PagedPrefillParams p{};
  p.num_seqs = 1;
  p.num_heads = p.num_kv_heads = 1;
  p.head_dim = 64;
  p.max_query_len = 1;
  p.dtype = DType::kFloat32;
  DeviceBuffer b(1024);
  p.q = p.k_cache = p.v_cache = p.out = b.get();
  EXPECT_EQ(cudaErrorNotSupported, launch_paged_prefill_attention(p, nullptr));
}

}  // namespace
}  // namespace muse::kernels::test
