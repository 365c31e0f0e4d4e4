// Image digest throughput on a 16-megapixel RGB image (4096 x 4096, 48 MiB of pixels): the
// SHA-256 the server runs over every decoded image (pixels + dimensions + preprocessing config).
// Compares the hand-written SHA-256 (src/vision/sha256) with OpenSSL's EVP SHA-256 over the same
// bytes; both must give the same digest.
//   digest_bench [benchmark flags]
#include <cstdint>
#include <memory>
#include <string>

#include <benchmark/benchmark.h>
#include <openssl/evp.h>

#include "src/vision/image_input.h"
#include "src/vision/sha256.h"

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

// The ComputeImageDigest layout (domain, dims, config length + JSON, pixels) through EVP.
ImageDigest OpenSslDigest(const Image& image, const PreprocessorConfig& config) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  static constexpr char kDomain[] = "muse-image-v1";
  EVP_DigestUpdate(ctx.get(), kDomain, sizeof(kDomain));
  const uint32_t dims[2] = {static_cast<uint32_t>(image.width), static_cast<uint32_t>(image.height)};
  EVP_DigestUpdate(ctx.get(), dims, sizeof(dims));
  const std::string cfg = muse::vision::PreprocessorConfigToJson(config);
  const uint64_t cfg_len = cfg.size();
  EVP_DigestUpdate(ctx.get(), &cfg_len, sizeof(cfg_len));
  EVP_DigestUpdate(ctx.get(), cfg.data(), cfg.size());
  EVP_DigestUpdate(ctx.get(), image.rgb.data(), image.rgb.size());
  ImageDigest d;
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), d.bytes.data(), &len);
  return d;
}

template <ImageDigest (*Digest)(const Image&, const PreprocessorConfig&)>
void BM_ImageDigest16MP(benchmark::State& state) {
  const Image& im = BigImage();
  const PreprocessorConfig cfg;
  if (muse::vision::ComputeImageDigest(im, cfg) != OpenSslDigest(im, cfg)) {
    state.SkipWithError("hand-written and OpenSSL digests differ");
    return;
  }
  for (auto _ : state) {
    ImageDigest d = Digest(im, cfg);
    benchmark::DoNotOptimize(d);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * im.rgb.size()));
}

BENCHMARK_TEMPLATE(BM_ImageDigest16MP, muse::vision::ComputeImageDigest)
    ->Name("ImageDigest16MP/hand_written")
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0);
BENCHMARK_TEMPLATE(BM_ImageDigest16MP, OpenSslDigest)
    ->Name("ImageDigest16MP/openssl_evp")
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
