// Image digest throughput on a 16-megapixel RGB image (4096 x 4096, 48 MiB of pixels): the
// SHA-256 (OpenSSL EVP) the server runs over every decoded image, pixels + dimensions +
// preprocessing config. The hand-written SHA-256 it replaced was measured against it by this
// benchmark at commit efd5144 (benchmarks/vision/RESULTS-vision.md).
//   digest_bench [benchmark flags]
#include <benchmark/benchmark.h>

#include <cstdint>

#include "src/vision/image_input.h"

namespace {

using muse::vision::Image;
using muse::vision::ImageDigest;
using muse::vision::PreprocessorConfig;

constexpr int kSide = 4096;  // 16.8 megapixels

const Image& BigImage() {
  static const Image im = [] {
    Image m;
    m.width = kSide;
    m.height = kSide;
    m.rgb.resize(static_cast<size_t>(kSide) * kSide * 3);
    uint64_t s = 88172645463325252ull;  // xorshift64: incompressible, never all-zero
    for (auto& b : m.rgb) {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      b = static_cast<uint8_t>(s >> 32);
    }
    return m;
  }();
  return im;
}

void BM_ImageDigest16MP(benchmark::State& state) {
  const Image& im = BigImage();
  const PreprocessorConfig cfg;
  for (auto _ : state) {
    ImageDigest d = muse::vision::ComputeImageDigest(im, cfg);
    benchmark::DoNotOptimize(d);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * im.rgb.size()));
}
BENCHMARK(BM_ImageDigest16MP)
    ->Name("ImageDigest16MP/openssl_evp")
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
