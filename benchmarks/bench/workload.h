// Benchmark workloads. Every request is a pure function of (config, index), so a run is
// reproducible for a seed whatever the arrival order, and duration-bounded runs can draw more.
//  - random:   prompt_token_ids of length input_len (± range_ratio) after an optional shared
//              prefix; max_tokens = output_len (± range_ratio) with ignore_eos, so output
//              lengths are exact (vLLM's RandomDataset, sent as ids instead of decoded text).
//  - sharegpt: conversations[0] -> prompt text, output length = tokens of conversations[1]
//              (or fixed); vLLM's sample_sharegpt_requests filters and seeded shuffle.
//  - image:    a chat message with a generated PNG and a short text; a fraction
//              image_repeat_ratio of requests reuse an earlier request's image (encoder cache).
// Each request also draws a priority class from priority_mix.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace muse::bench {

enum class WorkloadKind { kRandom, kShareGpt, kImage };

struct WorkloadConfig {
  WorkloadKind kind = WorkloadKind::kRandom;
  uint64_t seed = 0;
  int64_t random_input_len = 1024;
  int64_t random_output_len = 128;
  double random_range_ratio = 0.0;  // [0, 1): lengths uniform in [L(1-r), L(1+r)]
  int64_t random_prefix_len = 0;    // shared by every request
  std::string dataset_path;         // ShareGPT JSON
  int64_t sharegpt_output_len = 0;  // 0 = the reply's token count
  int64_t sharegpt_max_samples = 1000;
  bool ignore_eos = false;  // random and image always ignore EOS
  std::vector<std::pair<int, int>> image_sizes = {{224, 224}};  // width, height
  double image_repeat_ratio = 0.0;
  std::string image_text = "Describe this image.";
  std::vector<std::pair<std::string, double>> priority_mix;  // class -> weight
};

struct ModelFacts {
  int64_t vocab_size = 0;
  int64_t context_length = 0;
  bool supports_images = false;
  int32_t image_token_id = -1;  // never drawn into random prompts (it needs an image)
  int32_t audio_token_id = -1;  // nor the audio placeholder (it needs a clip)
};

struct BenchRequest {
  std::vector<int32_t> prompt_ids;  // random workload
  std::string prompt_text;          // sharegpt; image workload's text part
  std::string image_png;            // image workload
  int64_t image_key = -1;           // equal keys = identical image bytes
  int64_t expected_prompt_tokens = 0;
  int64_t max_tokens = 16;
  bool ignore_eos = false;
  std::string priority;  // "" = server default
};

using TokenizeFn = std::function<absl::StatusOr<std::vector<int32_t>>(const std::string&)>;

class Workload {
 public:
  static absl::StatusOr<std::unique_ptr<Workload>> Create(const WorkloadConfig& config,
                                                          const ModelFacts& facts,
                                                          const TokenizeFn& tokenize);
  BenchRequest Make(int64_t index) const;
  const WorkloadConfig& config() const { return config_; }

 private:
  struct SharedPrompt {
    std::string prompt;
    int64_t prompt_len = 0;
    int64_t output_len = 0;
  };
  Workload(WorkloadConfig config, ModelFacts facts) : config_(std::move(config)), facts_(facts) {}
  int64_t ImageKey(int64_t index) const;

  WorkloadConfig config_;
  ModelFacts facts_;
  std::vector<int32_t> prefix_;
  std::vector<SharedPrompt> sharegpt_;
};

// "interactive:0.7,batch:0.3"
absl::StatusOr<std::vector<std::pair<std::string, double>>> ParsePriorityMix(
    const std::string& spec);
// "224x224,336x336"
absl::StatusOr<std::vector<std::pair<int, int>>> ParseImageSizes(const std::string& spec);

// A deterministic, seed-dependent RGB picture (gradients + blocks) as a stored-deflate PNG, so
// distinct seeds give distinct image digests on the server and the payload is as large as the
// pixels.
std::string SyntheticPng(int width, int height, uint64_t seed);

}  // namespace muse::bench
