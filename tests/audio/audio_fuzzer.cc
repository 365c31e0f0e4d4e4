// libFuzzer target (issues 15 and 19): untrusted audio bytes through DecodeAudio (libsndfile:
// WAV, FLAC, Ogg Vorbis / Opus, MP3, ...), then what the server does with a decoded clip:
// resampling to 16 kHz and Whisper features on a short chunk. Invariants on success: the
// declared rate and channels are within the limits, every sample is finite, the duration is
// within the limit, and the features have the configured shape with finite values.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "src/audio/audio_decode.h"
#include "src/audio/resample.h"
#include "src/audio/whisper_features.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

}  // namespace

// LeakSanitizer: libsndfile 1.2.0 (Debian 12) leaks the vorbis_info of some malformed Ogg Vorbis
// streams on its own error path (a plain sf_open of such input leaks it; no muse code involved).
// The same entry is in tests/sanitizers/lsan.supp for the ASan build of the unit tests.
extern "C" const char* __lsan_default_suppressions() { return "leak:vorbis_info_init\n"; }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  muse::audio::AudioLimits limits;
  limits.max_bytes = 1 << 20;
  limits.max_seconds = 4;
  auto audio =
      muse::audio::DecodeAudio(std::string_view(reinterpret_cast<const char*>(data), size), limits);
  if (!audio.ok()) {
    Check(audio.status().code() == absl::StatusCode::kInvalidArgument,
          "error is not INVALID_ARGUMENT");
    return 0;
  }
  Check(
      audio->sample_rate >= limits.min_sample_rate && audio->sample_rate <= limits.max_sample_rate,
      "sample rate outside the limits");
  Check(audio->source_channels >= 1 && audio->source_channels <= limits.max_channels,
        "channels outside the limits");
  Check(!audio->samples.empty(), "success without samples");
  Check(audio->seconds() <= limits.max_seconds + 1.0 / audio->sample_rate, "longer than the limit");
  for (float s : audio->samples) Check(std::isfinite(s), "a sample is not finite");
  auto pcm = muse::audio::Resample(audio->samples, audio->sample_rate, 16000);
  Check(pcm.ok(), "resampling failed");
  if (pcm->empty()) return 0;
  muse::audio::WhisperFeatureConfig config;
  config.chunk_length = 1;
  auto mel = muse::audio::WhisperLogMel(*pcm, config);
  Check(mel.ok(), "features failed on decoded audio");
  Check(mel->n_mels == 80 && mel->n_frames == 100, "feature shape");
  for (float v : mel->data) Check(std::isfinite(v), "a feature is not finite");
  return 0;
}
