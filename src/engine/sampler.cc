#include "src/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace muse::engine {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

inline uint64_t SplitMix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

double CounterUniform(uint64_t seed, uint64_t stream, uint64_t step) {
  uint64_t x = SplitMix(seed);
  x = SplitMix(x ^ (stream * 0xD1B54A32D192ED03ull));
  x = SplitMix(x ^ (step * 0x8CB92BA72F3D8DD7ull));
  return static_cast<double>(x >> 11) * 0x1.0p-53;
}

void Sampler::ApplyPenalties(const SamplingRow& row) {
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

int32_t Sampler::Draw(const SamplingRow& row, double u) {
  const SamplingParams& p = *row.params;
  const int V = vocab_size_;
  const float inv_t = 1.0f / p.temperature;
  float mx = kNegInf;
  for (int i = 0; i < V; ++i) mx = std::max(mx, work_[i]);
  probs_.resize(V);
  for (int i = 0; i < V; ++i) probs_[i] = std::exp((work_[i] - mx) * inv_t);

  const bool use_k = p.top_k > 0 && p.top_k < V;
  const bool use_p = p.top_p < 1.0f;
  const bool use_min_p = p.min_p > 0.0f;
  if (!use_k && !use_p && !use_min_p) {
    double total = 0;
    for (int i = 0; i < V; ++i) total += probs_[i];
    double target = u * total, acc = 0;
    int32_t last = 0;
    for (int i = 0; i < V; ++i) {
      if (probs_[i] <= 0) continue;
      acc += probs_[i];
      last = i;
      if (acc > target) return i;
    }
    return last;
  }
  // Candidates sorted by probability, descending, ties by token id (deterministic).
  idx_.resize(V);
  std::iota(idx_.begin(), idx_.end(), 0);
  auto better = [&](int32_t a, int32_t b) {
    return probs_[a] != probs_[b] ? probs_[a] > probs_[b] : a < b;
  };
  int n = V;
  if (use_k) {
    std::nth_element(idx_.begin(), idx_.begin() + p.top_k, idx_.end(), better);
    n = p.top_k;
  }
  std::sort(idx_.begin(), idx_.begin() + n, better);
  while (n > 1 && probs_[idx_[n - 1]] <= 0) --n;
  if (use_min_p) {
    const float thresh = p.min_p * probs_[idx_[0]];  // p_max is the unnormalised max (= 1)
    while (n > 1 && probs_[idx_[n - 1]] < thresh) --n;
  }
  double total = 0;
  for (int i = 0; i < n; ++i) total += probs_[idx_[i]];
  if (use_p) {
    double acc = 0;
    int keep = n;
    for (int i = 0; i < n; ++i) {
      acc += probs_[idx_[i]];
      if (acc >= p.top_p * total) { keep = i + 1; break; }
    }
    n = keep;
    total = acc;
  }
  double target = u * total, acc = 0;
  for (int i = 0; i < n; ++i) {
    acc += probs_[idx_[i]];
    if (acc > target) return idx_[i];
  }
  return idx_[n - 1];
}

SampleResult Sampler::Sample(const SamplingRow& row) {
  const SamplingParams& p = *row.params;
  const int V = vocab_size_;
  work_.assign(row.logits, row.logits + V);
  const int generated = static_cast<int>(row.tokens->size()) - row.num_prompt_tokens;

  if (generated < p.min_tokens) {
    if (!p.ignore_eos && row.eos_token_ids) {
      for (int64_t e : *row.eos_token_ids) if (e >= 0 && e < V) work_[e] = kNegInf;
    }
    for (int32_t t : p.stop_token_ids) if (t >= 0 && t < V) work_[t] = kNegInf;
  }
  for (const auto& [t, bias] : p.logit_bias) {
    if (t >= 0 && t < V) work_[t] += bias;
  }
  ApplyPenalties(row);

  SampleResult result;
  if (p.temperature == 0.0f) {
    result.token_id = static_cast<int32_t>(std::max_element(work_.begin(), work_.end()) - work_.begin());
  } else {
    const double u = CounterUniform(row.seed, static_cast<uint64_t>(row.sample_index),
                                    static_cast<uint64_t>(generated));
    result.token_id = Draw(row, u);
  }

  if (p.logprobs >= 0) {
    float mx = kNegInf;
    for (int i = 0; i < V; ++i) mx = std::max(mx, work_[i]);
    double sum = 0;
    for (int i = 0; i < V; ++i) sum += std::exp(static_cast<double>(work_[i] - mx));
    const float lse = mx + static_cast<float>(std::log(sum));
    result.logprobs.logprob = work_[result.token_id] - lse;
    const int k = std::min(p.logprobs, V);
    if (k > 0) {
      idx_.resize(V);
      std::iota(idx_.begin(), idx_.end(), 0);
      std::partial_sort(idx_.begin(), idx_.begin() + k, idx_.end(), [&](int32_t a, int32_t b) {
        return work_[a] != work_[b] ? work_[a] > work_[b] : a < b;
      });
      for (int i = 0; i < k; ++i) result.logprobs.top.push_back({idx_[i], work_[idx_[i]] - lse});
    }
  }
  return result;
}

}  // namespace muse::engine
