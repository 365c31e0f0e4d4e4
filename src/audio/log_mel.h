// Log-mel features of one clip (whisper_features.h makes them; audio towers take them). A header
// of its own without std::span, so that ATen translation units (which lint.sh analyses as C++17)
// can include it.
#pragma once

#include <vector>

namespace muse::audio {

struct LogMel {
  int n_mels = 0;
  int n_frames = 0;         // nb_max_frames
  int valid_frames = 0;     // frames covering the audio (HF's attention mask: ceil(samples / hop))
  std::vector<float> data;  // [n_mels, n_frames], row-major
};

}  // namespace muse::audio
