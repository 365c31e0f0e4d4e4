// The host sampler as it was before the batched, fused implementation (src/engine/sampler.cc),
// kept verbatim as the oracle of the differential test: the production sampler must return the
// same token ids and bit-identical logprobs for every input.
#include "tests/engine/reference_sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

namespace muse::engine::testing {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

inline uint64_t SplitMix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

double ReferenceCounterUniform(uint64_t seed, uint64_t stream, uint64_t step) {
  uint64_t x = SplitMix(seed);
  x = SplitMix(x ^ (stream * 0xD1B54A32D192ED03ull));
  x = SplitMix(x ^ (step * 0x8CB92BA72F3D8DD7ull));
  return static_cast<double>(x >> 11) * 0x1.0p-53;
}

void ReferenceSampler::ApplyPenalties(const SamplingRow& row) {
  const SamplingParams& p = *row.params;
  const bool rep = p.repetition_penalty != 1.0f;
  const bool freq = p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
  if (!rep && !freq) return;
  const std::vector<int32_t>& toks = *row.tokens;
  count_.resize(vocab_size_, 0);
  seen_.resize(vocab_size_, 0);
  for (size_t i = 0; i < toks.size(); ++i) {
    const int32_t t = toks[i];
    if (t < 0 || t >= vocab_size_) continue;
    seen_[t] = 1;
    if (static_cast<int>(i) >= row.num_prompt_tokens) ++count_[t];
  }
  for (int32_t t : toks) {
    if (t < 0 || t >= vocab_size_ || !seen_[t]) continue;  // each token once
    float& l = work_[t];
    if (rep) l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
    if (count_[t] > 0) l -= p.presence_penalty + p.frequency_penalty * count_[t];
    seen_[t] = 0;
    count_[t] = 0;
  }
}

// exp(x) for x <= 0 (inputs are logit - max), branch-free so the loop vectorizes: Cody-Waite
// range reduction + degree-6 polynomial, ~2 ulp; x < -87 (incl. -inf for masked tokens) -> 0.
static inline float ExpNonPositive(float x) {
  const float xc = x < -87.0f ? -87.0f : x;
  const float kMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (xc * 1.44269504f + kMagic) - kMagic;
  const float r = (xc - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
  float p = 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return x < -87.0f ? 0.0f : p * scale;
}

// Reductions in 8 independent lanes so they vectorize (sampler.cc builds with -fno-trapping-math).
static inline float MaxOf(const float* x, int n) {
  float m[8];
  for (int j = 0; j < 8; ++j) m[j] = kNegInf;
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) m[j] = m[j] > x[i + j] ? m[j] : x[i + j];
  }
  float r = kNegInf;
  for (int j = 0; j < 8; ++j) r = r > m[j] ? r : m[j];
  for (; i < n; ++i) r = r > x[i] ? r : x[i];
  return r;
}

static inline double SumOf(const float* x, int n) {
  float m[8] = {};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) m[j] += x[i + j];
  }
  double r = 0;
  for (int j = 0; j < 8; ++j) r += m[j];
  for (; i < n; ++i) r += x[i];
  return r;
}

// (count, sum) of the positive probs >= th, in lanes.
static inline std::pair<int64_t, double> MaskedSum(const float* x, int n, float th) {
  float m[8] = {};
  int32_t c[8] = {};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) {
      const bool in = x[i + j] >= th && x[i + j] > 0;
      m[j] += in ? x[i + j] : 0.0f;
      c[j] += in;
    }
  }
  double r = 0;
  int64_t cnt = 0;
  for (int j = 0; j < 8; ++j) {
    r += m[j];
    cnt += c[j];
  }
  for (; i < n; ++i) {
    if (x[i] >= th && x[i] > 0) {
      r += x[i];
      ++cnt;
    }
  }
  return {cnt, r};
}

// Index of the first maximum (two vectorized passes instead of a serial compare chain).
static inline int32_t ArgMax(const float* x, int n) {
  const float m = MaxOf(x, n);
  for (int i = 0; i < n; ++i)
    if (x[i] == m) return i;
  return 0;
}

// First index where the running sum of probs exceeds target (blocked: whole blocks are skipped
// by their vectorized sum). Returns the last positive index if rounding leaves target unreached.
static inline int32_t InverseCdf(const float* probs, int n, double target) {
  constexpr int kBlock = 256;
  double acc = 0;
  int32_t last = 0;
  for (int b = 0; b < n; b += kBlock) {
    const int len = std::min(kBlock, n - b);
    const double block = SumOf(probs + b, len);
    if (acc + block <= target) {
      acc += block;
      if (block > 0) {
        for (int i = b + len - 1; i >= b; --i) {
          if (probs[i] > 0) {
            last = i;
            break;
          }
        }
      }
      continue;
    }
    for (int i = b; i < b + len; ++i) {
      if (probs[i] <= 0) continue;
      acc += probs[i];
      last = i;
      if (acc > target) return i;
    }
  }
  return last;
}

int32_t ReferenceSampler::Draw(const SamplingRow& row, const float* logits, double u) {
  const SamplingParams& p = *row.params;
  const int V = vocab_size_;
  const float inv_t = 1.0f / p.temperature;
  const float mx = MaxOf(logits, V);
  probs_.resize(V);
  float* probs = probs_.data();
  for (int i = 0; i < V; ++i) probs[i] = ExpNonPositive((logits[i] - mx) * inv_t);  // max prob is 1

  const bool use_k = p.top_k > 0 && p.top_k < V;
  const bool use_p = p.top_p < 1.0f;
  const bool use_min_p = p.min_p > 0.0f;
  if (!use_k && !use_p && !use_min_p) return InverseCdf(probs, V, u * SumOf(probs, V));
  // min_p survivors: prob >= min_p * p_max (p_max == 1).
  const float surv = use_min_p ? p.min_p : 0.0f;
  double mass_surv = use_min_p ? MaskedSum(probs, V, surv).second : SumOf(probs, V);
  // Sort only the head of the distribution: the smallest threshold whose candidate set provably
  // contains the top-k (count >= k), or the nucleus (mass >= top_p * survivor mass). Exact.
  float t = 1.0f / 16;
  while (true) {
    const auto [count, mass] = MaskedSum(probs, V, std::max(t, surv));
    const bool enough =
        use_k ? count >= p.top_k : (use_p ? mass >= p.top_p * mass_surv : t <= surv);
    if (enough || t == 0.0f) break;
    t = t < 0x1.0p-40f ? 0.0f : t * (1.0f / 256);
  }
  const float th = std::max(t, surv);
  idx_.clear();
  for (int i = 0; i < V; ++i) {
    if (probs[i] >= th && probs[i] > 0) idx_.push_back(i);
  }
  // Descending probability, ties by token id (deterministic).
  auto better = [&](int32_t a, int32_t b) {
    return probs[a] != probs[b] ? probs[a] > probs[b] : a < b;
  };
  std::sort(idx_.begin(), idx_.end(), better);
  int n = static_cast<int>(idx_.size());
  if (n == 0) return ArgMax(logits, V);
  if (use_k) n = std::min(n, p.top_k);
  double total = 0;
  if (use_k) {
    for (int i = 0; i < n; ++i) total += probs[idx_[i]];
  } else {
    total = mass_surv;
  }
  if (use_p) {
    double acc = 0;
    int keep = n;
    for (int i = 0; i < n; ++i) {
      acc += probs[idx_[i]];
      if (acc >= p.top_p * total) {
        keep = i + 1;
        break;
      }
    }
    n = keep;
    total = acc;
  }
  double target = u * total, acc = 0;
  for (int i = 0; i < n; ++i) {
    acc += probs[idx_[i]];
    if (acc > target) return idx_[i];
  }
  return idx_[n - 1];
}

SampleResult ReferenceSampler::Sample(const SamplingRow& row) {
  const SamplingParams& p = *row.params;
  const int V = vocab_size_;
  const int generated = static_cast<int>(row.tokens->size()) - row.num_prompt_tokens;
  // Structured output: a bitmask row replaces min_tokens by the bitmask (sampler.h).
  const bool mask = generated < p.min_tokens && row.allowed_bitmask == nullptr;
  const bool modify = row.allowed_bitmask != nullptr || mask || !p.logit_bias.empty() ||
                      p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f ||
                      p.frequency_penalty != 0.0f;
  // Unmodified logits are read in place (a 128k-vocab row is 512 KiB).
  const float* w = row.logits;
  if (modify) {
    work_.assign(row.logits, row.logits + V);
    if (row.allowed_bitmask != nullptr) {
      for (int i = 0; i < V; ++i) {
        if (!((row.allowed_bitmask[i / 32] >> (i % 32)) & 1u)) work_[i] = kNegInf;
      }
    }
    if (mask) {
      if (!p.ignore_eos && row.eos_token_ids) {
        for (int64_t e : *row.eos_token_ids)
          if (e >= 0 && e < V) work_[e] = kNegInf;
      }
      for (int32_t t : p.stop_token_ids)
        if (t >= 0 && t < V) work_[t] = kNegInf;
    }
    for (const auto& [t, bias] : p.logit_bias) {
      if (t >= 0 && t < V) work_[t] += bias;
    }
    ApplyPenalties(row);
    w = work_.data();
  }

  SampleResult result;
  if (p.temperature == 0.0f) {
    result.token_id = ArgMax(w, V);
  } else {
    const double u = ReferenceCounterUniform(row.seed, static_cast<uint64_t>(row.sample_index),
                                             static_cast<uint64_t>(generated));
    result.token_id = Draw(row, w, u);
  }

  if (p.logprobs >= 0) {
    const float mx = MaxOf(w, V);
    probs_.resize(V);
    for (int i = 0; i < V; ++i) probs_[i] = ExpNonPositive(w[i] - mx);
    const double sum = SumOf(probs_.data(), V);
    const float lse = mx + static_cast<float>(std::log(sum));
    result.logprobs.logprob = w[result.token_id] - lse;
    const int k = std::min(p.logprobs, V);
    if (k > 0) {
      // Top-k by a bounded insertion list: one pass, no V-sized sort.
      std::vector<int32_t>& top = idx_;
      top.clear();
      auto better = [&](int32_t a, int32_t b) { return w[a] != w[b] ? w[a] > w[b] : a < b; };
      for (int i = 0; i < V; ++i) {
        if (static_cast<int>(top.size()) == k && !better(i, top.back())) continue;
        auto pos = std::upper_bound(top.begin(), top.end(), i, better);
        top.insert(pos, i);
        if (static_cast<int>(top.size()) > k) top.pop_back();
      }
      for (int32_t t : top) result.logprobs.top.push_back({t, w[t] - lse});
    }
  }
  return result;
}

}  // namespace muse::engine::testing
