// End-to-end decode step of the CUDA runner on a llama3-8b-shape bf16 checkpoint (random
// weights, written here), with CUDA graphs: measured step time against the roofline
// (weight bytes + KV bytes read) / (device copy bandwidth measured in the same run).
//
//   cuda_runner_bench [--layers L (default 32)] [--context C (default 1024)] [--dir DIR]
// The table goes to stdout, logs to stderr.
//
// --layers < 32 keeps every per-layer shape of Llama-3-8B and shortens the stack (the ratio is
// per layer plus a fixed lm_head share), for machines with little disk or time.
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "models/testing/presets.h"
#include "models/testing/random_checkpoint.h"
#include "src/common/cli.h"
#include "src/common/logging.h"
#include "src/runtime/cuda/cuda_model_runner.h"

namespace {

using muse::kernels::kKvBlockSize;
using muse::models::Batch;

double CopyBandwidth() {
  const size_t bytes = 2ull << 30;
  void *a = nullptr, *b = nullptr;
  if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) return 0;
  cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  cudaEventRecord(e0);
  const int reps = 10;
  for (int i = 0; i < reps; ++i) cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
  cudaEventRecord(e1);
  cudaEventSynchronize(e1);
  float ms = 0;
  cudaEventElapsedTime(&ms, e0, e1);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes * reps / (ms * 1e-3);  // read + write
}

}  // namespace

int main(int argc, char** argv) {
  int layers = 32, context = 1024;
  std::string dir;
  CLI::App app("CUDA runner decode step on a llama3-8b-shape bf16 checkpoint vs the roofline.",
               "cuda_runner_bench");
  muse::cli::ConfigureApp(app);
  app.add_option("--layers", layers, "decoder layers (each with Llama-3-8B's shapes)")
      ->check(muse::cli::AtLeast(1));
  // max_position_embeddings 8192 holds the context plus the 64 positions the KV pool adds.
  app.add_option("--context", context, "tokens in each sequence's KV cache")
      ->check(muse::cli::InRange(1, 8128));
  app.add_option("--dir", dir,
                 "checkpoint directory, written when it has no model.safetensors "
                 "(default: /tmp/muse-llama3-8b-shape-<layers>l)");
  if (auto rc = muse::cli::ParseCommandLine(app, argc, argv)) return *rc;
  muse::InitLogging("info");
  if (dir.empty()) dir = "/tmp/muse-llama3-8b-shape-" + std::to_string(layers) + "l";
  if (!muse::runtime::CudaDeviceAvailable()) {
    std::fprintf(stderr, "no CUDA device\n");
    return 0;
  }
  auto preset = muse::models::DecoderPreset("llama3-8b-shape");
  if (!preset.ok()) return 1;
  muse::models::ModelConfig c = *preset;
  c.num_hidden_layers = layers;
  if (!std::filesystem::exists(dir + "/model.safetensors")) {
    auto w = muse::models::WriteRandomCheckpoint(
        dir, c, {.seed = 0, .dtype = muse::models::DType::kBFloat16});
    if (!w.ok()) {
      std::fprintf(stderr, "write: %s\n", w.status().ToString().c_str());
      return 1;
    }
  }
  const double bw = CopyBandwidth();
  const int max_batch = 64;
  const int blocks_per_seq = (context + 64 + kKvBlockSize - 1) / kKvBlockSize;
  auto r = muse::runtime::CudaModelRunner::Create({.model_dir = dir,
                                                   .device = "cuda",
                                                   .dtype = "bfloat16",
                                                   .num_kv_blocks = max_batch * blocks_per_seq});
  if (!r.ok()) {
    std::fprintf(stderr, "runner: %s\n", r.status().ToString().c_str());
    return 1;
  }
  // Sizes from the checkpoint actually loaded (a reused --dir may hold another stack).
  const auto& mc = (*r)->config();
  layers = static_cast<int>(mc.num_hidden_layers);
  const double H = mc.hidden_size, I = mc.intermediate_size, V = mc.vocab_size;
  const double q_dim = mc.num_attention_heads * mc.head_dim,
               kv_dim = mc.num_key_value_heads * mc.head_dim;
  const double per_layer = H * q_dim * 2 + H * kv_dim * 2 + 3 * H * I + 2 * H;
  const double weight_bytes = 2 * (layers * per_layer + H + V * H);
  int dev = 0;
  cudaDeviceProp prop{};
  cudaGetDevice(&dev);
  cudaGetDeviceProperties(&prop, dev);
  std::printf("device: %s; copy bandwidth %.0f GB/s; %d layers, context %d, bf16\n", prop.name,
              bw / 1e9, layers, context);
  std::printf("| batch | step ms | weights GB | KV GB | roofline ms | roofline / measured |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (int batch : {1, 64}) {
    // Fill the context with one prefill step per sequence, then time decode steps there.
    Batch decode;
    decode.max_blocks_per_seq = blocks_per_seq;
    decode.query_start_loc.push_back(0);
    for (int s = 0; s < batch; ++s) {
      Batch pre;
      pre.max_blocks_per_seq = blocks_per_seq;
      pre.query_start_loc = {0, context};
      pre.seq_lens = {context};
      for (int j = 0; j < blocks_per_seq; ++j) pre.block_tables.push_back(s * blocks_per_seq + j);
      for (int p = 0; p < context; ++p) {
        pre.input_ids.push_back((p * 7919 + s) % c.vocab_size);
        pre.positions.push_back(p);
        pre.slot_mapping.push_back(static_cast<int64_t>(s * blocks_per_seq + p / kKvBlockSize) *
                                       kKvBlockSize +
                                   p % kKvBlockSize);
      }
      pre.logits_indices = {context - 1};
      muse::models::Logits l;
      if (auto st = (*r)->Forward(pre, &l); !st.ok()) {
        std::fprintf(stderr, "prefill: %s\n", st.ToString().c_str());
        return 1;
      }
      decode.input_ids.push_back(1 + s);
      decode.positions.push_back(context);
      decode.slot_mapping.push_back(
          static_cast<int64_t>(s * blocks_per_seq + context / kKvBlockSize) * kKvBlockSize +
          context % kKvBlockSize);
      decode.logits_indices.push_back(s);
      decode.query_start_loc.push_back(s + 1);
      decode.seq_lens.push_back(context + 1);
      for (int j = 0; j < blocks_per_seq; ++j)
        decode.block_tables.push_back(s * blocks_per_seq + j);
    }
    muse::models::Logits l;
    auto step = [&] {
      const auto st = (*r)->Forward(decode, &l);
      if (!st.ok()) std::fprintf(stderr, "decode: %s\n", st.ToString().c_str());
      return st.ok();
    };
    for (int i = 0; i < 3; ++i) {  // capture + warm up
      if (!step()) return 1;
    }
    const int reps = 20;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) {
      if (!step()) return 1;
    }
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
        reps;
    const double kv_bytes =
        2.0 * batch * (context + 1) * layers * mc.num_key_value_heads * mc.head_dim * 2;
    const double roof_ms = (weight_bytes + kv_bytes) / bw * 1e3;
    std::printf("| %d | %.3f | %.2f | %.3f | %.3f | %.2f |\n", batch, ms, weight_bytes / 1e9,
                kv_bytes / 1e9, roof_ms, roof_ms / ms);
  }
  std::printf(
      "graphs captured: %d (step time includes the host side of Forward: staging, "
      "upload, graph launch, logits copy)\n",
      (*r)->num_cuda_graphs());
  return 0;
}
