// Image encode latency and images/s of a LLaVA vision tower + projector on CPU, random weights
// built in memory (no checkpoint on disk needed).
//   vision_bench [--preset llava-1.5-7b-shape|llava-tiny] [--dtype float32|bfloat16]
//                [--batch N] [--iters N] [--threads N]
// The result line goes to stdout, logs to stderr.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "models/cpu_threads.h"
#include "models/llava/llava_vision.h"
#include "models/testing/random_llava_checkpoint.h"
#include "src/common/cli.h"
#include "src/common/logging.h"

using namespace muse::models;

int main(int argc, char** argv) {
  std::string preset = "llava-1.5-7b-shape", dtype = "float32";
  int batch = 1, iters = 3, threads = 0;
  CLI::App app("Image encode latency and images/s of a LLaVA vision tower + projector on CPU.",
               "vision_bench");
  muse::cli::ConfigureApp(app);
  app.add_option("--preset", preset, "tower shape")
      ->check(CLI::IsMember({"llava-1.5-7b-shape", "llava-tiny", "llava-tiny-siglip"}));
  app.add_option("--dtype", dtype, "weights and activations")
      ->check(CLI::IsMember({"float32", "bfloat16"}));
  app.add_option("--batch", batch, "images per encode")->check(muse::cli::AtLeast(1));
  app.add_option("--iters", iters, "timed encodes after one warm-up")->check(muse::cli::AtLeast(1));
  app.add_option("--threads", threads, "CPU threads; 0 = the default")
      ->check(muse::cli::AtLeast(0));
  if (auto rc = muse::cli::ParseCommandLine(app, argc, argv)) return *rc;
  muse::InitLogging("info");
  if (threads > 0) muse::models::ConfigureCpuThreads(threads);
  ModelConfig tiny;
  tiny.architecture = "LlamaForCausalLM";
  tiny.vocab_size = 1000;
  tiny.hidden_size = 64;
  tiny.intermediate_size = 128;
  tiny.num_hidden_layers = 1;
  tiny.num_attention_heads = 4;
  tiny.num_key_value_heads = 4;
  tiny.head_dim = 16;
  tiny.max_position_embeddings = 512;
  auto c = llava::LlavaPreset(preset, tiny);
  if (!c.ok()) {
    std::fprintf(stderr, "%s\n", std::string(c.status().message()).c_str());
    return 2;
  }
  const at::ScalarType st = dtype == "bfloat16" ? at::kBFloat16 : at::kFloat;
  at::manual_seed(0);
  llava::TensorGetter get = [&](const std::string& name,
                                const std::vector<int64_t>& shape) -> absl::StatusOr<at::Tensor> {
    at::Tensor t =
        name.find("norm") != std::string::npos && name.find(".weight") != std::string::npos
            ? at::ones(shape)
            : at::randn(shape).mul_(0.02);
    return t.to(st);
  };
  auto vision = llava::LlavaVision::Load(*c, get, st, at::kCPU);
  if (!vision.ok()) {
    std::fprintf(stderr, "%s\n", std::string(vision.status().message()).c_str());
    return 1;
  }
  const int64_t S = c->vision.image_size;
  at::Tensor px = at::randn({batch, 3, S, S});
  (*vision)->Encode(px);  // warm-up
  double best = 1e30, total = 0;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    at::Tensor out = (*vision)->Encode(px);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s);
    total += s;
  }
  std::printf(
      "preset=%s dtype=%s batch=%d threads=%d tokens/image=%lld: mean %.1f ms/batch, best %.1f ms, "
      "%.3f images/s\n",
      preset.c_str(), dtype.c_str(), batch, at::get_num_threads(), (long long)c->num_image_tokens(),
      1e3 * total / iters, 1e3 * best, batch / (total / iters));
  return 0;
}
