// reshape_and_cache, RMSNorm (plain and fused residual), RoPE (+ llama3 host helper), SiLU-and-mul.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <tuple>

#include "kernels/cuda/activation.h"
#include "kernels/cuda/cache.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/rope.h"
#include "tests/kernels/cuda/test_util.h"

namespace muse::kernels::test {
namespace {

constexpr DType kAllTypes[] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16};

// ---------------- reshape_and_cache ----------------
class ReshapeAndCacheTest : public ::testing::TestWithParam<std::tuple<DType, int, int>> {};

TEST_P(ReshapeAndCacheTest, ScatterThroughShuffledSlotsRoundTrip) {
  MUSE_REQUIRE_DEVICE();
  const auto [dt, head_dim, num_tokens] = GetParam();
  const int kv_heads = 3, num_blocks = (num_tokens + 15) / 16 + 5;
  const int row = kv_heads * head_dim;
  const int64_t stride = row + 2 * head_dim * 4;  // K/V as a view into a fused qkv buffer
  std::mt19937 rng(1234 + head_dim + num_tokens);
  std::vector<float> key = random_values(num_tokens * stride, dt, rng);
  std::vector<float> val = random_values(num_tokens * stride, dt, rng);
  std::vector<int64_t> slots(num_blocks * 16);
  std::iota(slots.begin(), slots.end(), 0);
  std::shuffle(slots.begin(), slots.end(), rng);
  slots.resize(num_tokens);
  for (int t = 0; t < num_tokens; t += 5) slots[t] = -1;  // padding tokens

  auto dk = DeviceBuffer::from(encode(key, dt)), dv = DeviceBuffer::from(encode(val, dt));
  auto ds = DeviceBuffer::from(slots);
  const size_t cache_bytes = static_cast<size_t>(num_blocks) * 16 * row * dtype_size(dt);
  DeviceBuffer kc(cache_bytes), vc(cache_bytes);
  kc.poison();
  vc.poison();
  ReshapeAndCacheParams p{dk.get(), dv.get(), kc.get(), vc.get(), ds.get<int64_t>()};
  p.num_tokens = num_tokens;
  p.num_kv_heads = kv_heads;
  p.head_dim = head_dim;
  p.key_stride = p.value_stride = stride;
  p.dtype = dt;
  CUDA_OK(launch_reshape_and_cache(p, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  const auto hk = kc.to_host<uint8_t>(), hv = vc.to_host<uint8_t>();
  const size_t es = dtype_size(dt);
  std::vector<int> owner(num_blocks * 16, -1);
  for (int t = 0; t < num_tokens; ++t)
    if (slots[t] >= 0) owner[slots[t]] = t;
  const auto ek = encode(key, dt), ev = encode(val, dt);
  for (int s = 0; s < num_blocks * 16; ++s) {
    for (int i = 0; i < row; ++i) {
      const size_t c = (static_cast<size_t>(s) * row + i) * es;
      if (owner[s] < 0) {  // untouched slots keep the poison
        ASSERT_EQ(hk[c], 0xff);
        ASSERT_EQ(hv[c], 0xff);
        continue;
      }
      const size_t src = (owner[s] * stride + i) * es;
      ASSERT_EQ(0, std::memcmp(&hk[c], &ek[src], es)) << "slot " << s << " i " << i;
      ASSERT_EQ(0, std::memcmp(&hv[c], &ev[src], es)) << "slot " << s << " i " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, ReshapeAndCacheTest,
                         ::testing::Combine(::testing::ValuesIn(kAllTypes),
                                            ::testing::Values(16, 32, 64, 80, 96, 128),
                                            ::testing::Values(1, 7, 83)));

// ---------------- RMSNorm ----------------
class RmsNormTest : public ::testing::TestWithParam<std::tuple<DType, int, int, bool>> {};

TEST_P(RmsNormTest, MatchesReference) {
  MUSE_REQUIRE_DEVICE();
  const auto [dt, hidden, tokens, fused] = GetParam();
  std::mt19937 rng(7 + hidden + tokens);
  const size_t n = static_cast<size_t>(tokens) * hidden;
  auto x = random_values(n, dt, rng, -2.f, 2.f);
  auto res = random_values(n, dt, rng, -2.f, 2.f);
  auto w = random_values(hidden, dt, rng, 0.5f, 1.5f);
  const float eps = 1e-5f;
  std::vector<float> ref32(n), lowp(n), res_expect(n);
  for (int t = 0; t < tokens; ++t) {
    double ss32 = 0, ssl = 0;
    for (int i = 0; i < hidden; ++i) {
      const size_t k = static_cast<size_t>(t) * hidden + i;
      const float s32 = fused ? x[k] + res[k] : x[k];
      res_expect[k] = round_to(s32, dt);
      ss32 += double(s32) * s32;
      ssl += double(res_expect[k]) * res_expect[k];
    }
    const double inv32 = 1.0 / std::sqrt(ss32 / hidden + eps),
                 invl = 1.0 / std::sqrt(ssl / hidden + eps);
    for (int i = 0; i < hidden; ++i) {
      const size_t k = static_cast<size_t>(t) * hidden + i;
      const float s32 = fused ? x[k] + res[k] : x[k];
      ref32[k] = static_cast<float>(s32 * inv32 * w[i]);
      lowp[k] = round_to(static_cast<float>(res_expect[k] * invl * w[i]), dt);
    }
  }
  auto dx = DeviceBuffer::from(encode(x, dt)), dres = DeviceBuffer::from(encode(res, dt));
  auto dw = DeviceBuffer::from(encode(w, dt));
  DeviceBuffer dout(n * dtype_size(dt));
  dout.poison();
  RmsNormParams p{dout.get(), dx.get(), fused ? dres.get() : nullptr, dw.get()};
  p.num_tokens = tokens;
  p.hidden = hidden;
  p.eps = eps;
  p.dtype = dt;
  CUDA_OK(launch_rms_norm(p, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  expect_within_noise(decode(dout.to_host<uint8_t>(), dt), ref32, lowp, default_atol(dt),
                      "rmsnorm");
  if (fused) {
    const auto r = decode(dres.to_host<uint8_t>(), dt);
    for (size_t k = 0; k < n; ++k) ASSERT_EQ(r[k], res_expect[k]) << "residual " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, RmsNormTest,
                         ::testing::Combine(::testing::ValuesIn(kAllTypes),
                                            ::testing::Values(769, 4096, 5125),
                                            ::testing::Values(7, 83), ::testing::Bool()));

// ---------------- RoPE ----------------
TEST(RopeHost, Llama3InvFreqMatchesHfFormula) {
  // Llama 3.1: factor 8, low 1, high 4, original 8192
  const RopeScalingParams s{RopeScalingParams::Type::kLlama3, 8.0, 1.0, 4.0, 8192};
  const int dim = 128;
  const double theta = 500000.0;
  const auto plain = rope_inv_freq(dim, theta);
  const auto scaled = rope_inv_freq(dim, theta, s);
  ASSERT_EQ(scaled.size(), 64u);
  EXPECT_FLOAT_EQ(plain[0], 1.0f);
  int high = 0, low = 0, mid = 0;
  for (int i = 0; i < dim / 2; ++i) {
    const double f = plain[i], wl = 2 * M_PI / f;
    if (wl < 8192.0 / 4) {
      EXPECT_FLOAT_EQ(scaled[i], plain[i]) << i;  // high frequency: untouched
      ++high;
    } else if (wl > 8192.0 / 1) {
      EXPECT_FLOAT_EQ(scaled[i], static_cast<float>(f / 8)) << i;  // low frequency: / factor
      ++low;
    } else {
      const double sm = (8192.0 / wl - 1) / (4 - 1);
      EXPECT_NEAR(scaled[i], (1 - sm) * f / 8 + sm * f, 1e-6 * f) << i;
      ++mid;
    }
    if (i) {
      EXPECT_LE(scaled[i], scaled[i - 1]);
    }
  }
  EXPECT_GT(high, 0);
  EXPECT_GT(low, 0);
  EXPECT_GT(mid, 0);
  EXPECT_NEAR(plain[1], std::pow(500000.0, -2.0 / 128), 1e-7);
  std::vector<float> c, sn;
  rope_cos_sin_cache(scaled, 4, &c, &sn);
  ASSERT_EQ(c.size(), 4u * 64);
  EXPECT_FLOAT_EQ(c[0], 1.f);
  EXPECT_FLOAT_EQ(sn[64 + 0], std::sin(1.0f));
}

class RopeTest : public ::testing::TestWithParam<std::tuple<DType, int, int>> {};

TEST_P(RopeTest, NeoxHalfRotationMatchesReference) {
  MUSE_REQUIRE_DEVICE();
  const auto [dt, head_dim, tokens] = GetParam();
  const int heads = 5, kv_heads = 2, max_pos = 4099, half = head_dim / 2;
  std::mt19937 rng(99 + head_dim + tokens);
  const RopeScalingParams sc{RopeScalingParams::Type::kLlama3, 8.0, 1.0, 4.0, 8192};
  std::vector<float> cs, sn;
  rope_cos_sin_cache(rope_inv_freq(head_dim, 500000.0, sc), max_pos, &cs, &sn);
  std::vector<int32_t> pos(tokens);
  for (auto& p : pos) p = static_cast<int32_t>(rng() % max_pos);
  auto q = random_values(static_cast<size_t>(tokens) * heads * head_dim, dt, rng);
  auto k = random_values(static_cast<size_t>(tokens) * kv_heads * head_dim, dt, rng);
  auto rot = [&](std::vector<float> x, int nh, bool lowp) {
    for (int t = 0; t < tokens; ++t)
      for (int h = 0; h < nh; ++h)
        for (int r = 0; r < half; ++r) {
          float* e = &x[(static_cast<size_t>(t) * nh + h) * head_dim];
          const float c = cs[pos[t] * half + r], s = sn[pos[t] * half + r];
          const float a = e[r], b = e[r + half];
          e[r] = a * c - b * s;
          e[r + half] = b * c + a * s;
          if (lowp) {
            e[r] = round_to(e[r], dt);
            e[r + half] = round_to(e[r + half], dt);
          }
        }
    return x;
  };
  auto dq = DeviceBuffer::from(encode(q, dt)), dk = DeviceBuffer::from(encode(k, dt));
  auto dp = DeviceBuffer::from(pos), dc = DeviceBuffer::from(cs), ds = DeviceBuffer::from(sn);
  RopeParams p{dq.get(), dk.get(), dp.get<int32_t>(), dc.get<float>(), ds.get<float>()};
  p.num_tokens = tokens;
  p.num_heads = heads;
  p.num_kv_heads = kv_heads;
  p.head_dim = head_dim;
  p.dtype = dt;
  CUDA_OK(launch_rope(p, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  expect_within_noise(decode(dq.to_host<uint8_t>(), dt), rot(q, heads, false), rot(q, heads, true),
                      default_atol(dt), "rope q");
  expect_within_noise(decode(dk.to_host<uint8_t>(), dt), rot(k, kv_heads, false),
                      rot(k, kv_heads, true), default_atol(dt), "rope k");
}

INSTANTIATE_TEST_SUITE_P(Kernels, RopeTest,
                         ::testing::Combine(::testing::ValuesIn(kAllTypes),
                                            ::testing::Values(16, 32, 64, 80, 96, 128),
                                            ::testing::Values(7, 83)));

// ---------------- SiLU and mul ----------------
class SiluAndMulTest : public ::testing::TestWithParam<std::tuple<DType, int, int>> {};

TEST_P(SiluAndMulTest, MatchesReference) {
  MUSE_REQUIRE_DEVICE();
  const auto [dt, inter, tokens] = GetParam();
  std::mt19937 rng(5 + inter + tokens);
  auto in = random_values(static_cast<size_t>(tokens) * 2 * inter, dt, rng, -4.f, 4.f);
  const size_t n = static_cast<size_t>(tokens) * inter;
  std::vector<float> ref32(n), lowp(n);
  for (int t = 0; t < tokens; ++t)
    for (int i = 0; i < inter; ++i) {
      const float g = in[static_cast<size_t>(t) * 2 * inter + i];
      const float u = in[static_cast<size_t>(t) * 2 * inter + inter + i];
      const float silu = g / (1.f + std::exp(-g));
      ref32[static_cast<size_t>(t) * inter + i] = silu * u;
      lowp[static_cast<size_t>(t) * inter + i] =
          round_to(round_to(silu, dt) * u, dt);  // HF: act in dtype
    }
  auto din = DeviceBuffer::from(encode(in, dt));
  DeviceBuffer dout(n * dtype_size(dt));
  dout.poison();
  SiluAndMulParams p{dout.get(), din.get()};
  p.num_tokens = tokens;
  p.inter = inter;
  p.dtype = dt;
  CUDA_OK(launch_silu_and_mul(p, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  expect_within_noise(decode(dout.to_host<uint8_t>(), dt), ref32, lowp, default_atol(dt), "silu");
}

INSTANTIATE_TEST_SUITE_P(Kernels, SiluAndMulTest,
                         ::testing::Combine(::testing::ValuesIn(kAllTypes),
                                            ::testing::Values(769, 4096, 5125),
                                            ::testing::Values(1, 7, 83)));

}  // namespace
}  // namespace muse::kernels::test
