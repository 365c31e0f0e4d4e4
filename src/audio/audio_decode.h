// Untrusted audio bytes -> mono float PCM at the file's own rate, through libsndfile: WAV (PCM
// 8/16/24/32 bit, float), FLAC, Ogg Vorbis / Opus, MP3, and whatever else the system's libsndfile
// reads. The limits are checked from the header before any sample is decoded; corrupt or
// truncated data is InvalidArgument, never a crash. Plain C++ (no libtorch).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "src/common/status.h"

namespace muse::audio {

struct AudioLimits {
  int64_t max_bytes = int64_t{64} << 20;
  double max_seconds = 600;  // the server's --max-audio-seconds
  int max_channels = 8;
  int min_sample_rate = 1000;
  int max_sample_rate = 384000;
};

struct Audio {
  int sample_rate = 0;
  int source_channels = 0;
  std::string format;          // libsndfile's names, e.g. "WAV (Microsoft), Signed 16 bit PCM"
  std::vector<float> samples;  // mono: the mean of the channels, nominally in [-1, 1]
  double seconds() const {
    return sample_rate > 0 ? static_cast<double>(samples.size()) / sample_rate : 0.0;
  }
};

// Errors are InvalidArgument with a message starting "audio: " (callers prefix the field).
absl::StatusOr<Audio> DecodeAudio(std::string_view bytes, const AudioLimits& limits = {});

}  // namespace muse::audio
