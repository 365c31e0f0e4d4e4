#include "src/server/audio_input.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "src/audio/resample.h"

namespace muse::server {
namespace {

// "data:audio/wav;base64,...." -> bytes.
absl::StatusOr<std::string> DecodeAudioDataUri(std::string_view uri) {
  if (!vision::IsDataUri(uri)) {
    return absl::InvalidArgumentError("only data: URIs are accepted (remote audio is not fetched)");
  }
  const size_t comma = uri.find(',');
  if (comma == std::string_view::npos) {
    return absl::InvalidArgumentError("malformed data: URI (no ',')");
  }
  // absl::string_view is not std::string_view in Debian's Abseil.
  const std::string meta = absl::AsciiStrToLower(absl::string_view(uri.data() + 5, comma - 5));
  if (!absl::StartsWith(meta, "audio/")) {
    return absl::InvalidArgumentError("data: URI must have an audio/* type");
  }
  if (!absl::EndsWith(meta, ";base64")) {
    return absl::InvalidArgumentError("data: URI must be base64 encoded");
  }
  std::string bytes;
  if (!absl::Base64Unescape(absl::string_view(uri.data() + comma + 1, uri.size() - comma - 1),
                            &bytes)) {
    return absl::InvalidArgumentError("data: URI payload is not valid base64");
  }
  return bytes;
}

}  // namespace

absl::StatusOr<PreparedAudio> PrepareAudio(std::string_view input, bool is_url,
                                           const audio::WhisperFeatureConfig& features,
                                           const audio::AudioLimits& limits) {
  std::string decoded_uri;
  if (is_url) {
    ASSIGN_OR_RETURN(decoded_uri, DecodeAudioDataUri(input));
    input = decoded_uri;
  }
  if (input.empty()) return absl::InvalidArgumentError("empty audio");
  ASSIGN_OR_RETURN(audio::Audio clip, audio::DecodeAudio(input, limits));
  if (clip.samples.empty()) return absl::InvalidArgumentError("audio: no samples");
  PreparedAudio out;
  out.seconds = clip.seconds();
  // Only the feature window is ever seen: cut before resampling so a long clip costs no more (with
  // a margin past the window, so the resampler's filter sees what it would in the whole clip).
  const size_t window = static_cast<size_t>(static_cast<double>(features.n_samples()) *
                                            clip.sample_rate / features.sampling_rate) +
                        4096;
  if (clip.samples.size() > window) clip.samples.resize(window);
  ASSIGN_OR_RETURN(std::vector<float> pcm,
                   audio::Resample(clip.samples, clip.sample_rate, features.sampling_rate));
  if (pcm.size() > static_cast<size_t>(features.n_samples())) pcm.resize(features.n_samples());
  ASSIGN_OR_RETURN(out.features, audio::WhisperLogMel(pcm, features));
  const std::string settings = absl::StrCat(
      "muse-audio-v1 mels=", features.feature_size, " rate=", features.sampling_rate,
      " hop=", features.hop_length, " n_fft=", features.n_fft, " chunk=", features.chunk_length,
      " pad=", features.padding_value, " norm=", features.do_normalize ? 1 : 0);
  out.digest.bytes =
      vision::Sha256({settings, std::string_view(reinterpret_cast<const char*>(pcm.data()),
                                                 pcm.size() * sizeof(float))});
  return out;
}

}  // namespace muse::server
