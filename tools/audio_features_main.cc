// muse-audio-features [--preprocessor-config FILE | --feature-size N] [--npy OUT] [--] AUDIO
//   Decodes AUDIO (WAV, FLAC, Ogg Vorbis / Opus, MP3; mono mix), resamples it to the extractor's
//   rate and computes Whisper log-mel features exactly as the server does (issue 19). Prints the
//   input and the features' shape on stdout; --npy writes them as float32 [n_mels, n_frames] for
//   comparison with another pipeline (numpy.load).
#include <cstdio>
#include <exception>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "src/audio/audio_decode.h"
#include "src/audio/resample.h"
#include "src/audio/whisper_features.h"
#include "src/common/cli.h"
#include "src/common/logging.h"

namespace {

using muse::cli::kExitFailure;

int Fail(const absl::Status& st) {
  std::fprintf(stderr, "muse-audio-features: %s\n", std::string(st.message()).c_str());
  return kExitFailure;
}

absl::StatusOr<std::string> ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// NPY format 1.0 (numpy's own): magic, version, a header dict padded to a multiple of 64 bytes,
// then the little-endian float32 data in C order. Written here: a few lines, no library needed.
absl::Status WriteNpy(const std::string& path, const muse::audio::LogMel& m) {
  std::string header = absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': (", m.n_mels,
                                    ", ", m.n_frames, "), }");
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::ofstream f(path, std::ios::binary);
  if (!f) return absl::PermissionDeniedError(absl::StrCat("--npy: ", path, ": cannot write"));
  const auto len = static_cast<uint16_t>(header.size());
  f.write("\x93NUMPY\x01\x00", 8);
  const char le[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  f.write(le, 2);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  f.write(reinterpret_cast<const char*>(m.data.data()),
          static_cast<std::streamsize>(m.data.size() * sizeof(float)));
  if (!f) return absl::DataLossError(absl::StrCat("--npy: ", path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) try {
  muse::InitLogging("warn");
  std::string input, config_path, npy;
  int feature_size = 80;
  double max_seconds = 600;
  CLI::App app("Decodes an audio file and computes its Whisper log-mel features.",
               "muse-audio-features");
  muse::cli::ConfigureApp(app);
  auto* cfg = app.add_option("--preprocessor-config", config_path,
                             "a WhisperFeatureExtractor preprocessor_config.json")
                  ->check(CLI::ExistingFile);
  app.add_option("--feature-size", feature_size, "mel bins without a config (80; 128 for large-v3)")
      ->check(CLI::Range(1, 512))
      ->excludes(cfg);
  app.add_option("--max-audio-seconds", max_seconds, "refuse longer audio")
      ->check(CLI::PositiveNumber);
  app.add_option("--npy", npy, "write the features here as float32 [n_mels, n_frames]");
  app.add_option("audio", input, "the audio file")->required()->check(CLI::ExistingFile);
  if (auto rc = muse::cli::ParseCommandLine(app, argc, argv)) return *rc;

  muse::audio::WhisperFeatureConfig config;
  config.feature_size = feature_size;
  if (!config_path.empty()) {
    auto text = ReadAll(config_path);
    if (!text.ok()) return Fail(text.status());
    auto c = muse::audio::ParseWhisperFeatureConfig(*text);
    if (!c.ok()) return Fail(c.status());
    config = *c;
  }
  auto bytes = ReadAll(input);
  if (!bytes.ok()) return Fail(bytes.status());
  muse::audio::AudioLimits limits;
  limits.max_seconds = max_seconds;
  auto audio = muse::audio::DecodeAudio(*bytes, limits);
  if (!audio.ok()) return Fail(audio.status());
  auto pcm = muse::audio::Resample(audio->samples, audio->sample_rate, config.sampling_rate);
  if (!pcm.ok()) return Fail(pcm.status());
  auto mel = muse::audio::WhisperLogMel(*pcm, config);
  if (!mel.ok()) return Fail(mel.status());
  std::printf("input: %s, %d Hz, %d channel(s), %.3f s\n", audio->format.c_str(),
              audio->sample_rate, audio->source_channels, audio->seconds());
  std::printf("input_features: [1, %d, %d] (%d frames of audio)\n", mel->n_mels, mel->n_frames,
              mel->valid_frames);
  if (!npy.empty()) {
    if (auto st = WriteNpy(npy, *mel); !st.ok()) return Fail(st);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "muse-audio-features: %s\n", e.what());
  return muse::cli::kExitFailure;
}
