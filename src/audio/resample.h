// Sample-rate conversion through libsoxr at its high quality setting (SOXR_HQ: the algorithm
// family librosa's default resampler uses). Mono float32.
#pragma once

#include <span>
#include <vector>

#include "src/common/status.h"

namespace muse::audio {

// `in` at in_rate -> out_rate; the output has round(size * out_rate / in_rate) samples. The same
// rate returns a copy. InvalidArgument for a rate <= 0.
absl::StatusOr<std::vector<float>> Resample(std::span<const float> in, int in_rate, int out_rate);

}  // namespace muse::audio
