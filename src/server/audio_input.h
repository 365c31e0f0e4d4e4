// The audio entry point the server calls per clip: raw audio bytes or a data: URI -> decoded
// (src/audio, limits from the header), resampled to the feature extractor's rate, Whisper log-mel
// features and the clip's digest (the encoder-cache key and the prefix-cache extra key, as an
// image's). Plain C++, no libtorch.
#pragma once

#include <string_view>

#include "src/audio/audio_decode.h"
#include "src/audio/log_mel.h"
#include "src/audio/whisper_features.h"
#include "src/common/status.h"
#include "src/vision/image_input.h"

namespace muse::server {

struct PreparedAudio {
  double seconds = 0;      // of the decoded clip (before the feature window cuts it)
  audio::LogMel features;  // [n_mels, nb_max_frames], valid_frames of them cover the clip
  // SHA-256 over a domain tag, the 16 kHz (feature-rate) PCM the features see and the canonical
  // feature settings: equal digests mean equal features, so equal encoder outputs for one model.
  // The tag keeps audio and image digests apart in the one encoder cache.
  vision::ImageDigest digest;
};

// `input` is raw encoded bytes, or with `is_url` a "data:audio/...;base64," URI. Every failure is
// InvalidArgument with a message naming the problem ("audio: ...", "data: URI ...").
absl::StatusOr<PreparedAudio> PrepareAudio(std::string_view input, bool is_url,
                                           const audio::WhisperFeatureConfig& features,
                                           const audio::AudioLimits& limits);

}  // namespace muse::server
