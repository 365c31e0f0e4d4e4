// The device sampler (kernels/cuda/sampling.cu) against the host sampler (engine::Sampler::Sample):
// for identical logits and knobs the same seed must give the same token id, the same logprob float
// bits and the same top-logprobs (ids and float bits) -- issue #14. Random rows at odd vocab sizes,
// many ties, -inf logits, every knob (penalties over repeated tokens, biases incl. repeated and
// out-of-range ids, min_tokens masking, logprobs 0/5/20), several seeds, streams and steps. Runs
// under the CUDA emulator (device_sampler_parity_emu_test) and on a GPU
// (device_sampler_parity_test, skipped without a device).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/sampling.h"
#include "src/engine/request.h"
#include "src/engine/sampler.h"
#include "tests/kernels/cuda/test_util.h"

namespace muse::engine {
namespace {

using kernels::kSamplingMaxTopLogprobs;
using kernels::SamplingArgs;
using kernels::SamplingRowParams;
using kernels::test::DeviceBuffer;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// One row as the engine hands it to the host sampler.
struct HostRow {
  std::vector<float> logits;
  SamplingParams params;
  std::vector<int32_t> tokens;  // prompt + generated
  int num_prompt = 0;
  std::vector<int64_t> eos;
  uint64_t seed = 0;
  int sample_index = 0;
  std::vector<uint32_t> allowed;  // structured output's bitmask [ceil(V / 32)], empty = none

  SamplingRow Row() const {
    return {logits.data(), &params,      &tokens, num_prompt,
            seed,          sample_index, &eos,    allowed.empty() ? nullptr : allowed.data()};
  }
  int generated() const { return static_cast<int>(tokens.size()) - num_prompt; }
};

struct DeviceResult {
  std::vector<int32_t> ids;
  std::vector<float> logprobs;
  std::vector<int32_t> top_ids;  // [rows, 20]
  std::vector<float> top_logprobs;
};

// CSR lists appended per row.
struct Csr {
  std::vector<int32_t> offsets{0};
  std::vector<int32_t> ids;
  std::vector<float> values;
  std::vector<int32_t> counts;
  void close() { offsets.push_back(static_cast<int32_t>(ids.size())); }
};

// What a CUDA runner builds from the engine's rows (the host sampler's semantics, see sampling.h).
void build_lists(const HostRow& r, int V, Csr* masked, Csr* bias, Csr* penalty) {
  const SamplingParams& p = r.params;
  if (r.generated() < p.min_tokens && r.allowed.empty()) {  // a bitmask row folds min_tokens in
    if (!p.ignore_eos) {
      for (int64_t e : r.eos) masked->ids.push_back(static_cast<int32_t>(e));
    }
    for (int32_t t : p.stop_token_ids) masked->ids.push_back(t);
  }
  masked->close();
  for (const auto& [t, b] : p.logit_bias) {
    bias->ids.push_back(t);
    bias->values.push_back(b);
  }
  bias->close();
  // Distinct ids in first-occurrence order (out-of-range ids passed through: the kernel ignores
  // them as the host does), each with its count among the generated tokens.
  std::vector<int32_t> order;
  std::vector<int> count;
  for (size_t i = 0; i < r.tokens.size(); ++i) {
    const int32_t t = r.tokens[i];
    const auto it = std::find(order.begin(), order.end(), t);
    size_t k = it - order.begin();
    if (it == order.end()) {
      order.push_back(t);
      count.push_back(0);
    }
    if (static_cast<int>(i) >= r.num_prompt) ++count[k];
  }
  for (size_t k = 0; k < order.size(); ++k) {
    penalty->ids.push_back(order[k]);
    penalty->counts.push_back(count[k]);
  }
  penalty->close();
  (void)V;
}

SamplingRowParams device_params(const HostRow& r) {
  const SamplingParams& p = r.params;
  SamplingRowParams d;
  d.temperature = p.temperature;
  d.top_k = p.top_k;
  d.top_p = p.top_p;
  d.min_p = p.min_p;
  d.repetition_penalty = p.repetition_penalty;
  d.presence_penalty = p.presence_penalty;
  d.frequency_penalty = p.frequency_penalty;
  d.logprobs = p.logprobs;
  d.seed = r.seed;
  d.sample_index = r.sample_index;
  d.generated = r.generated();
  return d;
}

// Samples every row (one vocab) on the device; `bitmask` optional [rows, ceil(V / 32)], else
// the rows' own bitmasks when any has one (every token allowed in the others).
DeviceResult device_sample(const std::vector<HostRow>& rows, int V,
                           const std::vector<uint32_t>* bitmask = nullptr) {
  const int n = static_cast<int>(rows.size());
  std::vector<uint32_t> row_masks;
  if (bitmask == nullptr &&
      std::any_of(rows.begin(), rows.end(), [](const HostRow& r) { return !r.allowed.empty(); })) {
    for (const HostRow& r : rows) {
      if (r.allowed.empty()) {
        row_masks.insert(row_masks.end(), (V + 31) / 32, ~uint32_t{0});
      } else {
        row_masks.insert(row_masks.end(), r.allowed.begin(), r.allowed.end());
      }
    }
    bitmask = &row_masks;
  }
  std::vector<float> logits;
  std::vector<SamplingRowParams> params;
  Csr masked, bias, penalty;
  for (const HostRow& r : rows) {
    logits.insert(logits.end(), r.logits.begin(), r.logits.end());
    params.push_back(device_params(r));
    build_lists(r, V, &masked, &bias, &penalty);
  }
  // Empty lists still get a valid (1-element) allocation.
  auto nonempty_i = [](std::vector<int32_t> v) {
    if (v.empty()) v.push_back(0);
    return v;
  };
  auto nonempty_f = [](std::vector<float> v) {
    if (v.empty()) v.push_back(0);
    return v;
  };
  auto d_logits = DeviceBuffer::from(logits);
  auto d_params = DeviceBuffer::from(params);
  auto d_mo = DeviceBuffer::from(masked.offsets), d_mi = DeviceBuffer::from(nonempty_i(masked.ids));
  auto d_bo = DeviceBuffer::from(bias.offsets), d_bi = DeviceBuffer::from(nonempty_i(bias.ids));
  auto d_bv = DeviceBuffer::from(nonempty_f(bias.values));
  auto d_po = DeviceBuffer::from(penalty.offsets),
       d_pi = DeviceBuffer::from(nonempty_i(penalty.ids));
  auto d_pc = DeviceBuffer::from(nonempty_i(penalty.counts));
  DeviceBuffer d_mask = bitmask ? DeviceBuffer::from(*bitmask) : DeviceBuffer();
  DeviceBuffer d_ids(n * sizeof(int32_t)), d_lp(n * sizeof(float));
  DeviceBuffer d_tids(n * kSamplingMaxTopLogprobs * sizeof(int32_t));
  DeviceBuffer d_tlp(n * kSamplingMaxTopLogprobs * sizeof(float));
  d_ids.poison();
  d_lp.poison();
  d_tids.poison();
  d_tlp.poison();
  DeviceBuffer ws(kernels::sampling_workspace_bytes(n, V));
  SamplingArgs a;
  a.logits = d_logits.get<float>();
  a.num_rows = n;
  a.vocab = V;
  a.params = d_params.get<SamplingRowParams>();
  a.allowed_bitmask = bitmask ? d_mask.get<uint32_t>() : nullptr;
  a.masked_offsets = d_mo.get<int32_t>();
  a.masked_ids = d_mi.get<int32_t>();
  a.bias_offsets = d_bo.get<int32_t>();
  a.bias_ids = d_bi.get<int32_t>();
  a.bias_values = d_bv.get<float>();
  a.penalty_offsets = d_po.get<int32_t>();
  a.penalty_ids = d_pi.get<int32_t>();
  a.penalty_counts = d_pc.get<int32_t>();
  a.out_ids = d_ids.get<int32_t>();
  a.out_logprobs = d_lp.get<float>();
  a.out_top_ids = d_tids.get<int32_t>();
  a.out_top_logprobs = d_tlp.get<float>();
  a.workspace = ws.get();
  a.workspace_bytes = ws.bytes();
  DeviceResult out;
  EXPECT_EQ(cudaSuccess, kernels::launch_sampling(a, nullptr));
  EXPECT_EQ(cudaSuccess, cudaDeviceSynchronize());
  out.ids = d_ids.to_host<int32_t>();
  out.logprobs = d_lp.to_host<float>();
  out.top_ids = d_tids.to_host<int32_t>();
  out.top_logprobs = d_tlp.to_host<float>();
  return out;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}
// Float bits, except that any NaN equals any NaN (a GPU's NaN payload is not x86's).
bool same_float(float a, float b) { return (std::isnan(a) && std::isnan(b)) || bits(a) == bits(b); }

std::string describe(const HostRow& r) {
  const SamplingParams& p = r.params;
  std::string s = "V=" + std::to_string(r.logits.size()) + " T=" + std::to_string(p.temperature) +
                  " k=" + std::to_string(p.top_k) + " p=" + std::to_string(p.top_p) +
                  " min_p=" + std::to_string(p.min_p) +
                  " rep=" + std::to_string(p.repetition_penalty) +
                  " pres=" + std::to_string(p.presence_penalty) +
                  " freq=" + std::to_string(p.frequency_penalty) +
                  " bias=" + std::to_string(p.logit_bias.size()) +
                  " min_tokens=" + std::to_string(p.min_tokens) +
                  " gen=" + std::to_string(r.generated()) + " lp=" + std::to_string(p.logprobs) +
                  " seed=" + std::to_string(r.seed) + " idx=" + std::to_string(r.sample_index);
  return s;
}

// EXACT comparison of every row: ids, logprob bits, top list ids and bits.
void expect_parity(const std::vector<HostRow>& rows, int V, const DeviceResult& d,
                   const std::vector<std::vector<float>>* host_logits = nullptr) {
  Sampler sampler(V);
  for (size_t i = 0; i < rows.size(); ++i) {
    HostRow r = rows[i];
    if (host_logits) r.logits = (*host_logits)[i];
    const SampleResult h = sampler.Sample(r.Row());
    SCOPED_TRACE("row " + std::to_string(i) + ": " + describe(r));
    EXPECT_EQ(d.ids[i], h.token_id);
    const int k = r.params.logprobs < 0 ? 0 : std::min(r.params.logprobs, V);
    if (r.params.logprobs >= 0) {
      EXPECT_TRUE(same_float(d.logprobs[i], h.logprobs.logprob))
          << "logprob device " << d.logprobs[i] << " host " << h.logprobs.logprob;
      ASSERT_EQ(static_cast<int>(h.logprobs.top.size()), k);
    }
    for (int j = 0; j < kSamplingMaxTopLogprobs; ++j) {
      const size_t o = i * kSamplingMaxTopLogprobs + j;
      if (j < k) {
        EXPECT_EQ(d.top_ids[o], h.logprobs.top[j].token_id) << "top " << j;
        EXPECT_TRUE(same_float(d.top_logprobs[o], h.logprobs.top[j].logprob))
            << "top " << j << " device " << d.top_logprobs[o] << " host "
            << h.logprobs.top[j].logprob;
      } else {
        EXPECT_EQ(d.top_ids[o], -1) << "unused top slot " << j;
      }
    }
  }
}

template <typename T>
T pick(std::mt19937& rng, std::initializer_list<T> v) {
  return *(v.begin() + std::uniform_int_distribution<int>(0, static_cast<int>(v.size()) - 1)(rng));
}

std::vector<float> random_logits(int V, std::mt19937& rng) {
  std::vector<float> x(V);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int kind = std::uniform_int_distribution<int>(0, 5)(rng);
  const float sd = pick(rng, {0.5f, 2.f, 4.f, 30.f});
  for (int i = 0; i < V; ++i) {
    float v = nd(rng) * sd;
    if (kind == 1) v = std::round(v);                                // many ties
    if (kind == 2) v = static_cast<float>(static_cast<int>(v) % 3);  // a few values only
    if (kind == 3) v = 1.5f;                                         // flat
    x[i] = v;
  }
  if (kind == 4 || kind == 5) {  // -inf holes (kind 5: almost everything)
    const float hole = kind == 4 ? 0.1f : 0.97f;
    for (float& v : x)
      if (std::uniform_real_distribution<float>(0, 1)(rng) < hole) v = kNegInf;
  }
  if (V > 3 && std::uniform_int_distribution<int>(0, 3)(rng) == 0) {  // a duplicated maximum
    const float m = *std::max_element(x.begin(), x.end()) + 1.f;
    x[V / 3] = m;
    x[V - 1] = m;
  }
  return x;
}

HostRow random_row(int V, std::mt19937& rng) {
  HostRow r;
  r.logits = random_logits(V, rng);
  SamplingParams& p = r.params;
  p.temperature = pick(rng, {0.0f, 0.3f, 0.7f, 1.0f, 1.0f, 1.7f});
  p.top_k = pick(rng, {0, 0, -1, 1, 3, 40, V - 1, V, V + 3});
  p.top_p = pick(rng, {1.0f, 1.0f, 0.9f, 0.5f, 0.99f, 0.1f});
  p.min_p = pick(rng, {0.0f, 0.0f, 0.05f, 0.3f, 1.0f});
  p.repetition_penalty = pick(rng, {1.0f, 1.0f, 1.3f, 0.8f});
  p.presence_penalty = pick(rng, {0.0f, 0.0f, 0.5f, -1.2f});
  p.frequency_penalty = pick(rng, {0.0f, 0.0f, 0.3f, 2.0f, -0.7f});
  p.logprobs = pick(rng, {-1, -1, 0, 5, 20});
  const int nbias = pick(rng, {0, 0, 1, 4});
  std::uniform_int_distribution<int> tok(0, V - 1);
  std::normal_distribution<float> bd(0.f, 3.f);
  for (int i = 0; i < nbias; ++i) p.logit_bias.push_back({tok(rng), bd(rng)});
  if (nbias == 4) {
    p.logit_bias.push_back(p.logit_bias[0]);  // repeated id: added twice, in order
    p.logit_bias.push_back({V + 2, 5.f});     // out of range: ignored
    p.logit_bias.push_back({-1, 5.f});
  }
  // prompt + generated drawn from a small id range so that tokens repeat
  const int range = std::max(1, std::min(V, pick(rng, {3, 20, 200})));
  std::uniform_int_distribution<int> small(0, range - 1);
  r.num_prompt = pick(rng, {0, 1, 5, 17});
  const int gen = pick(rng, {0, 1, 4, 12});
  for (int i = 0; i < r.num_prompt + gen; ++i) r.tokens.push_back(small(rng));
  if (!r.tokens.empty() && pick(rng, {0, 1}) == 1) r.tokens.push_back(V + 1);  // ignored id
  if (r.tokens.size() > static_cast<size_t>(r.num_prompt) && pick(rng, {0, 1}))
    r.tokens.push_back(r.tokens[r.num_prompt]);  // a generated token again
  p.min_tokens = pick(rng, {0, 0, 1, 100});
  p.ignore_eos = pick(rng, {0, 0, 1}) == 1;
  r.eos = {tok(rng)};
  if (pick(rng, {0, 1})) r.eos.push_back(V + 7);  // out of range
  if (pick(rng, {0, 1})) p.stop_token_ids = {tok(rng), tok(rng)};
  r.seed = pick<uint64_t>(rng, {0ull, 1ull, 42ull, 0xdeadbeefcafef00dull}) + rng() % 3;
  r.sample_index = pick(rng, {0, 0, 1, 3});
  return r;
}

TEST(DeviceSamplerParity, RandomRowsAtOddVocabSizes) {
  MUSE_REQUIRE_DEVICE();
  std::mt19937 rng(20240514);
  for (int V : {1, 2, 7, 8, 9, 31, 255, 256, 257, 1000, 2047, 2049, 2999, 4099}) {
    SCOPED_TRACE("vocab " + std::to_string(V));
    std::vector<HostRow> rows;
    const int n = V <= 300 ? 60 : 30;
    for (int i = 0; i < n; ++i) rows.push_back(random_row(V, rng));
    expect_parity(rows, V, device_sample(rows, V));
  }
}

// The same row at several steps, seeds and streams (the draw changes, parity must not).
TEST(DeviceSamplerParity, SeedsStepsAndStreams) {
  MUSE_REQUIRE_DEVICE();
  std::mt19937 rng(7);
  const int V = 613;
  HostRow base = random_row(V, rng);
  base.logits = std::vector<float>(V);
  std::normal_distribution<float> nd(0.f, 1.5f);
  for (float& v : base.logits) v = nd(rng);
  base.params.temperature = 0.9f;
  base.params.logprobs = 5;
  std::vector<HostRow> rows;
  for (int knobs = 0; knobs < 4; ++knobs) {
    for (int step = 0; step < 6; ++step) {
      HostRow r = base;
      r.params.top_k = knobs == 1 ? 50 : 0;
      r.params.top_p = knobs == 2 ? 0.8f : 1.0f;
      r.params.min_p = knobs == 3 ? 0.02f : 0.0f;
      r.seed = 1000 + knobs;
      r.sample_index = step % 2;
      r.tokens.insert(r.tokens.end(), step, 7);  // generated step grows
      rows.push_back(r);
    }
  }
  const DeviceResult d = device_sample(rows, V);
  expect_parity(rows, V, d);
  std::vector<int32_t> distinct(d.ids.begin(), d.ids.end());
  std::sort(distinct.begin(), distinct.end());
  EXPECT_GT(std::unique(distinct.begin(), distinct.end()) - distinct.begin(), 3);
}

// A llama-2-sized row: the candidate sort leaves shared memory (> 4096 candidates) and the
// inverse CDF crosses 130 blocks.
TEST(DeviceSamplerParity, LargeVocabRows) {
  MUSE_REQUIRE_DEVICE();
  std::mt19937 rng(99);
  const int V = 33001;
  std::vector<HostRow> rows(3);
  std::normal_distribution<float> nd(0.f, 0.4f);
  for (HostRow& r : rows) {
    r.logits.resize(V);
    for (float& v : r.logits) v = std::round(nd(rng) * 8.f) / 8.f;  // flat-ish with ties
    r.params.temperature = 1.0f;
    r.params.logprobs = 20;
    r.seed = rng();
    r.tokens = {1, 2, 3, 3, 4};
    r.num_prompt = 2;
  }
  rows[0].params.top_p = 0.95f;  // nucleus of most of the vocabulary: global-memory sort
  rows[1].params.top_k = 5000;
  rows[1].params.repetition_penalty = 1.2f;
  rows[2].params.frequency_penalty = 0.5f;  // plain draw: blocked inverse CDF
  rows[2].params.logit_bias = {{32999, 2.f}, {5, -1.f}};
  expect_parity(rows, V, device_sample(rows, V));
}

// Every logit -inf (all tokens masked by min_tokens, or -inf logits): the host's NaN paths.
TEST(DeviceSamplerParity, AllMaskedRows) {
  MUSE_REQUIRE_DEVICE();
  for (int V : {1, 3, 20}) {
    std::vector<HostRow> rows;
    for (int knobs = 0; knobs < 4; ++knobs) {
      HostRow r;
      r.logits.assign(V, kNegInf);
      r.params.temperature = knobs == 0 ? 0.0f : 1.0f;
      r.params.top_k = knobs == 2 ? 2 : 0;
      r.params.top_p = knobs == 3 ? 0.5f : 1.0f;
      r.params.logprobs = 3;
      r.seed = 5;
      rows.push_back(r);
    }
    HostRow m;  // finite logits, every id an eos/stop token before min_tokens
    m.logits.assign(V, 0.5f);
    m.params.min_tokens = 2;
    m.params.logprobs = 1;
    for (int t = 0; t < V; ++t) m.params.stop_token_ids.push_back(t);
    rows.push_back(m);
    expect_parity(rows, V, device_sample(rows, V));
  }
}

// Structured output: the device bitmask equals -inf logits on the host.
TEST(DeviceSamplerParity, AllowedBitmaskIsNegInfOnTheHost) {
  MUSE_REQUIRE_DEVICE();
  std::mt19937 rng(3);
  for (int V : {5, 32, 33, 1001}) {
    const int words = (V + 31) / 32;
    std::vector<HostRow> rows;
    std::vector<uint32_t> mask;
    std::vector<std::vector<float>> host_logits;
    for (int i = 0; i < 10; ++i) {
      HostRow r = random_row(V, rng);
      const int density = pick(rng, {0, 1, 2, 3});  // none, sparse, half, all allowed
      std::vector<float> masked = r.logits;
      for (int w = 0; w < words; ++w) {
        uint32_t word = 0;
        for (int b = 0; b < 32; ++b) {
          const bool on =
              density == 3 || (density == 1 && rng() % 16 == 0) || (density == 2 && rng() % 2 == 0);
          word |= static_cast<uint32_t>(on) << b;
          const int t = w * 32 + b;
          if (t < V && !on) masked[t] = kNegInf;
        }
        mask.push_back(word);
      }
      rows.push_back(r);
      host_logits.push_back(masked);
    }
    expect_parity(rows, V, device_sample(rows, V, &mask), &host_logits);
  }
}

// Structured output on both sides: the host sampler's SamplingRow::allowed_bitmask equals the
// device's allowed_bitmask, min_tokens folded into the bitmask by the caller (no masked ids for
// those rows on the device, none applied by the host). Constrained and unconstrained rows mixed.
TEST(DeviceSamplerParity, HostBitmaskRowsMatchTheDevice) {
  MUSE_REQUIRE_DEVICE();
  std::mt19937 rng(17);
  for (int V : {1, 5, 32, 33, 1001, 4099}) {
    SCOPED_TRACE("vocab " + std::to_string(V));
    const int words = (V + 31) / 32;
    std::vector<HostRow> rows;
    for (int i = 0; i < 24; ++i) {
      HostRow r = random_row(V, rng);
      const int density = pick(rng, {-1, 0, 1, 1, 2, 3});  // unconstrained, none .. all allowed
      if (density >= 0) {
        r.allowed.assign(words, 0);
        for (int t = 0; t < V; ++t) {
          const bool on =
              density == 3 || (density == 1 && rng() % 16 == 0) || (density == 2 && rng() % 2 == 0);
          if (on) r.allowed[t / 32] |= uint32_t{1} << (t % 32);
        }
        if (density == 1 && rng() % 2 == 0) {  // only the eos id allowed, below min_tokens
          std::fill(r.allowed.begin(), r.allowed.end(), 0u);
          const int64_t e = r.eos[0];
          r.allowed[e / 32] |= uint32_t{1} << (e % 32);
          r.params.min_tokens = 100;
          r.params.ignore_eos = false;
        }
      }
      rows.push_back(r);
    }
    expect_parity(rows, V, device_sample(rows, V));
  }
}

}  // namespace
}  // namespace muse::engine
