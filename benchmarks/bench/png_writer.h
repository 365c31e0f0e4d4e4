// Minimal PNG encoder for synthetic benchmark images: 8-bit RGB, filter 0, zlib "stored"
// (uncompressed) deflate blocks. Valid PNG for any decoder; not meant to be small.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace muse::bench {

// `rgb` is height * width * 3 bytes, row major.
std::string EncodePngRgb(int width, int height, const std::vector<uint8_t>& rgb);

// A deterministic, seed-dependent picture (gradients + blocks) so distinct seeds give distinct
// image digests on the server.
std::string SyntheticPng(int width, int height, uint64_t seed);

}  // namespace muse::bench
