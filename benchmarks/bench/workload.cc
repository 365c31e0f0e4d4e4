#include "benchmarks/bench/workload.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "src/common/file_util.h"
#include "src/common/image_encode.h"

namespace muse::bench {
namespace {

// Per-(seed, index, stream) generator so each request and each of its draws is independent.
std::mt19937_64 Rng(uint64_t seed, int64_t index, uint64_t stream) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(index) * 0xbf58476d1ce4e5b9ULL +
               stream * 0x94d049bb133111ebULL;
  x ^= x >> 31;
  std::seed_seq seq{static_cast<uint32_t>(x), static_cast<uint32_t>(x >> 32),
                    static_cast<uint32_t>(stream)};
  return std::mt19937_64(seq);
}

int64_t DrawLen(std::mt19937_64& rng, int64_t len, double ratio, int64_t min_len) {
  const int64_t lo =
      std::max<int64_t>(min_len, static_cast<int64_t>(std::floor(len * (1 - ratio))));
  // vLLM's RandomDataset: uniform integers in [int(L * (1 - r)), int(L * (1 + r))].
  const int64_t hi = std::max<int64_t>(lo, static_cast<int64_t>(std::floor(len * (1 + ratio))));
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

// A uniform token id that is not one of the model's media placeholders (they need an image or a
// clip).
template <class Dist, class Gen>
int32_t DrawTextToken(Dist& dist, Gen& rng, const ModelFacts& facts) {
  int32_t t = dist(rng);
  while (t == facts.image_token_id || t == facts.audio_token_id) t = dist(rng);
  return t;
}

enum Stream : uint64_t { kLengths = 1, kTokens, kPriority, kImage, kShuffle, kPrefix };

}  // namespace

absl::StatusOr<std::unique_ptr<Workload>> Workload::Create(const WorkloadConfig& config,
                                                           const ModelFacts& facts,
                                                           const TokenizeFn& tokenize) {
  if (config.random_range_ratio < 0 || config.random_range_ratio >= 1) {
    return absl::InvalidArgumentError("--random-range-ratio must be in [0, 1)");
  }
  if (config.image_repeat_ratio < 0 || config.image_repeat_ratio > 1) {
    return absl::InvalidArgumentError("--image-repeat-ratio must be in [0, 1]");
  }
  std::unique_ptr<Workload> w(new Workload(config, facts));
  if (config.kind == WorkloadKind::kRandom) {
    if (facts.vocab_size <= 0)
      return absl::InvalidArgumentError("random workload: vocab size unknown");
    auto rng = Rng(config.seed, 0, kPrefix);
    std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(facts.vocab_size - 1));
    for (int64_t i = 0; i < config.random_prefix_len; ++i) {
      w->prefix_.push_back(DrawTextToken(tok, rng, facts));
    }
  } else if (config.kind == WorkloadKind::kShareGpt) {
    auto parsed = ParseJsonFile(config.dataset_path);
    if (!parsed.ok()) {
      return absl::Status(parsed.status().code(),
                          absl::StrCat("--dataset-path: ", parsed.status().message()));
    }
    const nlohmann::json& data = *parsed;
    if (!data.is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(config.dataset_path, ": ShareGPT file: expected a JSON array"));
    }
    std::vector<std::pair<std::string, std::string>> convs;
    for (const auto& item : data) {
      if (!item.is_object() || !item.contains("conversations")) continue;
      const auto& c = item["conversations"];
      if (!c.is_array() || c.size() < 2 || !c[0].contains("value") || !c[1].contains("value"))
        continue;
      if (!c[0]["value"].is_string() || !c[1]["value"].is_string()) continue;
      convs.emplace_back(c[0]["value"].get<std::string>(), c[1]["value"].get<std::string>());
    }
    auto rng = Rng(config.seed, 0, kShuffle);
    std::shuffle(convs.begin(), convs.end(), rng);
    const int64_t max_total =
        facts.context_length > 0 ? std::min<int64_t>(2048, facts.context_length) : 2048;
    for (const auto& [prompt, reply] : convs) {
      if (static_cast<int64_t>(w->sharegpt_.size()) >= config.sharegpt_max_samples) break;
      auto p = tokenize(prompt);
      if (!p.ok()) return p.status();
      int64_t out_len = config.sharegpt_output_len;
      if (out_len <= 0) {
        auto r = tokenize(reply);
        if (!r.ok()) return r.status();
        out_len = static_cast<int64_t>(r->size());
      }
      const int64_t in_len = static_cast<int64_t>(p->size());
      // vLLM's pruning: too short to be meaningful, or too long for the context.
      if (in_len < 4 || (config.sharegpt_output_len <= 0 && out_len < 4)) continue;
      if (in_len > 1024 || in_len + out_len > max_total) continue;
      w->sharegpt_.push_back({prompt, in_len, out_len});
    }
    if (w->sharegpt_.empty())
      return absl::InvalidArgumentError("ShareGPT file: no usable conversations");
  } else if (config.image_sizes.empty()) {
    return absl::InvalidArgumentError("image workload: no --image-sizes");
  }
  return w;
}

int64_t Workload::ImageKey(int64_t index) const {
  // Repeats point at a uniformly chosen earlier request and take its image (depth ~ log index).
  while (index > 0) {
    auto rng = Rng(config_.seed, index, kImage);
    if (std::uniform_real_distribution<double>(0, 1)(rng) >= config_.image_repeat_ratio) break;
    index = std::uniform_int_distribution<int64_t>(0, index - 1)(rng);
  }
  return index;
}

BenchRequest Workload::Make(int64_t index) const {
  BenchRequest r;
  auto len_rng = Rng(config_.seed, index, kLengths);
  switch (config_.kind) {
    case WorkloadKind::kRandom: {
      const int64_t in_len =
          DrawLen(len_rng, config_.random_input_len, config_.random_range_ratio, 1);
      r.max_tokens = DrawLen(len_rng, config_.random_output_len, config_.random_range_ratio, 1);
      auto rng = Rng(config_.seed, index, kTokens);
      std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(facts_.vocab_size - 1));
      r.prompt_ids = prefix_;
      for (int64_t i = 0; i < in_len; ++i) r.prompt_ids.push_back(DrawTextToken(tok, rng, facts_));
      r.expected_prompt_tokens = static_cast<int64_t>(r.prompt_ids.size());
      r.ignore_eos = true;
      break;
    }
    case WorkloadKind::kShareGpt: {
      const SharedPrompt& s = sharegpt_[static_cast<size_t>(index) % sharegpt_.size()];
      r.prompt_text = s.prompt;
      r.expected_prompt_tokens = s.prompt_len;
      r.max_tokens = s.output_len;
      r.ignore_eos = config_.ignore_eos;
      break;
    }
    case WorkloadKind::kImage: {
      r.max_tokens = DrawLen(len_rng, config_.random_output_len, config_.random_range_ratio, 1);
      r.image_key = ImageKey(index);
      auto rng = Rng(config_.seed, r.image_key, kImage + 100);
      const auto& size = config_.image_sizes[rng() % config_.image_sizes.size()];
      r.image_png = SyntheticPng(size.first, size.second, rng());
      r.prompt_text = config_.image_text;
      r.ignore_eos = true;
      break;
    }
  }
  if (!config_.priority_mix.empty()) {
    auto rng = Rng(config_.seed, index, kPriority);
    double total = 0;
    for (const auto& p : config_.priority_mix) total += p.second;
    double u = std::uniform_real_distribution<double>(0, total)(rng);
    r.priority = config_.priority_mix.back().first;
    for (const auto& p : config_.priority_mix) {
      if (u < p.second) {
        r.priority = p.first;
        break;
      }
      u -= p.second;
    }
  }
  return r;
}

absl::StatusOr<std::vector<std::pair<std::string, double>>> ParsePriorityMix(
    const std::string& spec) {
  std::vector<std::pair<std::string, double>> mix;
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::vector<std::string> kv = absl::StrSplit(item, ':');
    double w = 0;
    if (kv.size() != 2 || !absl::SimpleAtod(kv[1], &w) || w < 0 ||
        (kv[0] != "interactive" && kv[0] != "batch")) {
      return absl::InvalidArgumentError(
          absl::StrCat("--priority-mix: expected interactive:W,batch:W, got '", item, "'"));
    }
    mix.emplace_back(kv[0], w);
  }
  return mix;
}

absl::StatusOr<std::vector<std::pair<int, int>>> ParseImageSizes(const std::string& spec) {
  std::vector<std::pair<int, int>> sizes;
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::vector<absl::string_view> wh = absl::StrSplit(item, 'x');
    int w = 0, h = 0;
    if (wh.size() != 2 || !absl::SimpleAtoi(wh[0], &w) || !absl::SimpleAtoi(wh[1], &h) || w <= 0 ||
        h <= 0 || w > 8192 || h > 8192) {
      return absl::InvalidArgumentError(
          absl::StrCat("--image-sizes: expected WxH, got '", item, "'"));
    }
    sizes.emplace_back(w, h);
  }
  return sizes;
}

std::string SyntheticPng(int width, int height, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int r0 = rng() % 256, g0 = rng() % 256, b0 = rng() % 256, block = 8 + rng() % 24;
  std::vector<uint8_t> rgb(static_cast<size_t>(width) * height * 3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      uint8_t* p = &rgb[(static_cast<size_t>(y) * width + x) * 3];
      const bool on = ((x / block) + (y / block)) % 2 == 0;
      p[0] = static_cast<uint8_t>(r0 + x * 255 / std::max(1, width - 1));
      p[1] = static_cast<uint8_t>(g0 + y * 255 / std::max(1, height - 1));
      p[2] = static_cast<uint8_t>(on ? b0 : 255 - b0);
    }
  }
  return EncodePng(rgb, width, height, 3, kPngStored);
}

}  // namespace muse::bench
