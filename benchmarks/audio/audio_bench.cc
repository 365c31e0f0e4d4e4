// Audio input latency on CPU (issue 19): a 30 s clip through decode (44.1 kHz stereo 16-bit WAV,
// libsndfile) -> resample to 16 kHz (libsoxr HQ) -> Whisper log-mel (128 bins) -> Qwen2-Audio
// audio tower + projector at the qwen2-audio-7b-shape (whisper-large-v3-sized encoder, random
// weights built in memory: no checkpoint on disk), fp32.
//   audio_bench [--benchmark_filter=...]   (results on stdout, Google Benchmark's format)
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>

#include "models/cpu_threads.h"
#include "models/qwen2_audio/qwen2_audio_tower.h"
#include "models/testing/random_qwen2_audio_checkpoint.h"
#include "src/audio/audio_decode.h"
#include "src/audio/resample.h"
#include "src/audio/whisper_features.h"

namespace {

using namespace muse;
using namespace muse::models::qwen2_audio;

constexpr int kRate = 44100, kChannels = 2, kSeconds = 30;

// A 16-bit PCM WAV file in memory: a chirp over noise, so every mel band has energy.
std::string MakeWav() {
  const uint32_t frames = kRate * kSeconds, data_bytes = frames * kChannels * 2;
  std::string w;
  auto u32 = [&](uint32_t v) { w.append(reinterpret_cast<const char*>(&v), 4); };
  auto u16 = [&](uint16_t v) { w.append(reinterpret_cast<const char*>(&v), 2); };
  w += "RIFF";
  u32(36 + data_bytes);
  w += "WAVEfmt ";
  u32(16);
  u16(1);
  u16(kChannels);
  u32(kRate);
  u32(kRate * kChannels * 2);
  u16(kChannels * 2);
  u16(16);
  w += "data";
  u32(data_bytes);
  std::mt19937 rng(1);
  std::normal_distribution<double> noise(0.0, 0.05);
  for (uint32_t i = 0; i < frames; ++i) {
    const double t = static_cast<double>(i) / kRate;
    const double s = 0.4 * std::sin(2 * M_PI * (100.0 + 120.0 * t) * t);
    for (int c = 0; c < kChannels; ++c) {
      u16(static_cast<uint16_t>(static_cast<int16_t>(std::lround(32767 * (s + noise(rng))))));
    }
  }
  return w;
}

const std::string& Wav() {
  static const std::string* wav = new std::string(MakeWav());
  return *wav;
}

audio::WhisperFeatureConfig FeatureConfig() {
  audio::WhisperFeatureConfig f;
  f.feature_size = 128;
  return f;
}

// The tower with N(0, 0.02) weights (LayerNorm weights 1), built once.
const Qwen2AudioTower& Tower() {
  static const Qwen2AudioTower* tower = [] {
    muse::models::ConfigureCpuThreads(0);  // every core, OpenBLAS first (as the server does)
    auto c = Qwen2AudioPreset("qwen2-audio-7b-shape", muse::models::ModelConfig{});
    at::manual_seed(0);
    TensorGetter get = [](const std::string& name,
                          const std::vector<int64_t>& shape) -> absl::StatusOr<at::Tensor> {
      const bool norm_weight = name.size() >= 11 && name.ends_with("norm.weight");
      return norm_weight ? at::ones(shape) : at::randn(shape).mul_(0.02);
    };
    auto t = Qwen2AudioTower::Load(*c, get, at::kFloat, at::kCPU);
    if (!t.ok()) {
      std::fprintf(stderr, "%s\n", std::string(t.status().message()).c_str());
      std::abort();
    }
    return t->release();
  }();
  return *tower;
}

audio::LogMel Features() {
  auto a = audio::DecodeAudio(Wav());
  auto pcm = audio::Resample(a->samples, a->sample_rate, 16000);
  return *audio::WhisperLogMel(*pcm, FeatureConfig());
}

void BM_Decode30s(benchmark::State& state) {
  for (auto _ : state) {
    auto a = audio::DecodeAudio(Wav());
    if (!a.ok()) state.SkipWithError(std::string(a.status().message()).c_str());
    benchmark::DoNotOptimize(a->samples.data());
  }
}
BENCHMARK(BM_Decode30s)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Resample30s(benchmark::State& state) {
  auto a = audio::DecodeAudio(Wav());
  for (auto _ : state) {
    auto pcm = audio::Resample(a->samples, a->sample_rate, 16000);
    benchmark::DoNotOptimize(pcm->data());
  }
}
BENCHMARK(BM_Resample30s)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_WhisperLogMel128(benchmark::State& state) {
  auto a = audio::DecodeAudio(Wav());
  auto pcm = audio::Resample(a->samples, a->sample_rate, 16000);
  for (auto _ : state) {
    auto mel = audio::WhisperLogMel(*pcm, FeatureConfig());
    benchmark::DoNotOptimize(mel->data.data());
  }
}
BENCHMARK(BM_WhisperLogMel128)->Unit(benchmark::kMillisecond)->UseRealTime();

// The tower alone for 30 s (3000 valid frames -> 750 tokens of 4096).
void BM_Tower7bShape30s(benchmark::State& state) {
  const Qwen2AudioTower& tower = Tower();
  const audio::LogMel mel = Features();
  at::Tensor f =
      at::from_blob(const_cast<float*>(mel.data.data()), {mel.n_mels, mel.n_frames}, at::kFloat);
  for (auto _ : state) {
    at::Tensor out = tower.Encode(f, mel.valid_frames);
    benchmark::DoNotOptimize(out.data_ptr<float>());
    state.counters["tokens"] = static_cast<double>(out.size(0));
  }
  state.counters["aten_threads"] = at::get_num_threads();
}
BENCHMARK(BM_Tower7bShape30s)->Unit(benchmark::kSecond)->UseRealTime()->Iterations(1);

// Bytes to embeddings: decode + resample + features + tower.
void BM_EndToEnd7bShape30s(benchmark::State& state) {
  const Qwen2AudioTower& tower = Tower();
  for (auto _ : state) {
    const audio::LogMel mel = Features();
    at::Tensor f =
        at::from_blob(const_cast<float*>(mel.data.data()), {mel.n_mels, mel.n_frames}, at::kFloat);
    at::Tensor out = tower.Encode(f, mel.valid_frames);
    benchmark::DoNotOptimize(out.data_ptr<float>());
  }
}
BENCHMARK(BM_EndToEnd7bShape30s)->Unit(benchmark::kSecond)->UseRealTime()->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
