// HF's WhisperFeatureExtractor (the numpy path, transformers' audio_utils.spectrogram), the input
// of Whisper-style audio towers such as Qwen2-Audio's: 16 kHz mono -> padded / truncated to the
// chunk -> STFT (periodic Hann window of n_fft, hop_length, centred with reflect padding) ->
// power -> Slaney mel filters (0 to 8 kHz) -> max(., 1e-10) -> log10 -> the last frame dropped ->
// max(x, max(x) - 8) -> (x + 4) / 4. The numerics follow HF's: float64 throughout, except the
// complex spectrum (HF stores it as complex64) and the last three steps (float32).
#pragma once

#include <span>
#include <string>
#include <vector>

#include "src/audio/log_mel.h"
#include "src/common/status.h"

namespace muse::audio {

struct WhisperFeatureConfig {
  int feature_size = 80;  // mel bins (128 for whisper-large-v3)
  int sampling_rate = 16000;
  int hop_length = 160;
  int n_fft = 400;
  int chunk_length = 30;  // seconds
  double padding_value = 0.0;
  bool do_normalize = false;  // zero mean, unit variance over the audio (before padding)
  int n_samples() const { return chunk_length * sampling_rate; }
  int nb_max_frames() const { return n_samples() / hop_length; }
};

// preprocessor_config.json of a WhisperFeatureExtractor (absent keys keep the defaults above);
// errors name the key. A non-zero `dither` is refused (it adds random noise).
absl::StatusOr<WhisperFeatureConfig> ParseWhisperFeatureConfig(const std::string& json_text);

// `samples` at config.sampling_rate (resample first). Audio longer than the chunk is truncated.
absl::StatusOr<LogMel> WhisperLogMel(std::span<const float> samples,
                                     const WhisperFeatureConfig& config);

// HF mel_filter_bank(num_frequency_bins, num_mel_filters, min_frequency, max_frequency,
// sampling_rate, norm="slaney", mel_scale="slaney"): [num_frequency_bins, num_mel_filters].
std::vector<double> SlaneyMelFilters(int num_frequency_bins, int num_mel_filters,
                                     double min_frequency, double max_frequency, int sampling_rate);

}  // namespace muse::audio
