// The small random Llama the engine tests run on (and the CPU runner over it) (2 layers, hidden 64,
// head_dim 16, GQA 4/2), written once per test process, and random prompts over its vocabulary.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "models/model_config.h"
#include "models/testing/random_checkpoint.h"
#include "src/engine/engine.h"
#include "src/runtime/model_runner.h"

namespace muse::testing {

inline models::ModelConfig SmallLlamaConfig(int vocab, int64_t intermediate,
                                            const std::string& torch_dtype, int64_t eos) {
  models::ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.arch = models::Arch::kLlama;
  c.vocab_size = vocab;
  c.hidden_size = 64;
  c.intermediate_size = intermediate;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.max_position_embeddings = 1024;
  c.rms_norm_eps = 1e-5;
  c.torch_dtype = torch_dtype;
  c.bos_token_id = 1;
  c.eos_token_ids = {eos};
  return c;
}

// A random checkpoint of `cfg` in <tmp>/<prefix><pid>; the caller keeps the path in a static.
inline std::string WriteTestModel(const std::string& prefix, const models::ModelConfig& cfg,
                                  const models::RandomCheckpointOptions& options) {
  const auto d = std::filesystem::temp_directory_path() / (prefix + std::to_string(::getpid()));
  std::filesystem::create_directories(d);
  auto st = models::WriteRandomCheckpoint(d.string(), cfg, options);
  if (!st.ok()) ADD_FAILURE() << st.status();
  return d.string();
}

// The fp32 CPU runner on `dir`, one thread, `num_blocks` KV blocks; nullptr (and a test failure)
// if it cannot be made.
inline std::unique_ptr<runtime::ModelRunner> MakeCpuRunner(const std::string& dir,
                                                           int64_t num_blocks) {
  runtime::RunnerOptions o;
  o.model_dir = dir;
  o.device = "cpu";
  o.num_threads = 1;
  o.num_kv_blocks = num_blocks;
  auto r = runtime::CreateModelRunner(o);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? std::move(*r) : nullptr;
}

// `len` ids in [3, vocab): no BOS (1) or EOS (2), so generation never stops on the prompt.
inline std::vector<int32_t> RandomPrompt(int len, int seed, int vocab) {
  std::mt19937 rng(seed);
  std::vector<int32_t> p(len);
  for (auto& t : p) t = 3 + static_cast<int32_t>(rng() % (vocab - 3));
  return p;
}

// Engine::Stats is a snapshot the engine thread publishes after each step, so a client can read
// its final message a moment before the step that sent it is counted. Waits (up to 10 s) until no
// request is live and returns that snapshot.
inline engine::EngineStats SettledStats(const engine::Engine& engine) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  engine::EngineStats s = engine.Stats();
  while (s.num_requests != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    s = engine.Stats();
  }
  return s;
}

}  // namespace muse::testing
