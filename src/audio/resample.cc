#include "src/audio/resample.h"

#include <soxr.h>

#include <cmath>

#include "absl/strings/str_cat.h"

namespace muse::audio {

absl::StatusOr<std::vector<float>> Resample(std::span<const float> in, int in_rate, int out_rate) {
  if (in_rate <= 0 || out_rate <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("audio: sample rates must be positive (", in_rate, " -> ", out_rate, ")"));
  }
  if (in_rate == out_rate || in.empty()) return std::vector<float>(in.begin(), in.end());
  const auto want =
      static_cast<size_t>(std::llround(static_cast<long double>(in.size()) * out_rate / in_rate));
  std::vector<float> out(want);
  const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
  const soxr_quality_spec_t quality = soxr_quality_spec(SOXR_HQ, 0);
  size_t done = 0;
  const soxr_error_t err = soxr_oneshot(in_rate, out_rate, 1, in.data(), in.size(), nullptr,
                                        out.data(), out.size(), &done, &io, &quality, nullptr);
  if (err != nullptr) {
    return absl::InternalError(
        absl::StrCat("audio: resampling ", in_rate, " -> ", out_rate, " Hz failed: ", err));
  }
  out.resize(done);
  return out;
}

}  // namespace muse::audio
