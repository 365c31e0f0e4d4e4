// Audio input (issue 19): decoding real speech (espeak-ng, made at test time) in every format
// libsndfile writes here, at several rates, mono and stereo; limits and broken data; resampling;
// and the Whisper log-mel features against an independent numpy reference
// (whisper_reference.py, run with Debian's python3 + python3-numpy).
#include <gtest/gtest.h>
#include <sndfile.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "src/audio/audio_decode.h"
#include "src/audio/resample.h"
#include "src/audio/whisper_features.h"

namespace muse::audio {
namespace {

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/muse_audio_test_" + std::to_string(::getpid()) + "_" +
         name;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Real speech: espeak-ng's 22,050 Hz mono 16-bit WAV of a sentence.
const std::string& SpeechWav() {
  static const std::string wav = [] {
    const std::string path = TempPath("speech.wav");
    const std::string cmd =
        "espeak-ng -w " + path + " 'Muse serve hears a voice note about the weather in Lisbon.'";
    if (std::system(cmd.c_str()) != 0) return std::string();
    std::string bytes = ReadFile(path);
    std::remove(path.c_str());
    return bytes;
  }();
  return wav;
}

const Audio& Speech() {
  static const Audio a = [] {
    auto d = DecodeAudio(SpeechWav());
    return d.ok() ? *d : Audio{};
  }();
  return a;
}

// `mono` written through libsndfile as `format` at `rate` with `channels` (channel c = 0.5 mono *
// (1 - 0.5 c): at half scale, so a resampler's overshoot never clips an integer format); the
// file's bytes, or "" when this libsndfile cannot write that format.
std::string Encode(const std::vector<float>& mono, int rate, int channels, int format) {
  const std::string path = TempPath("enc");
  SF_INFO info{};
  info.samplerate = rate;
  info.channels = channels;
  info.format = format;
  if (!sf_format_check(&info)) return "";
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  if (f == nullptr) return "";
  std::vector<float> frames(mono.size() * channels);
  for (size_t i = 0; i < mono.size(); ++i)
    for (int c = 0; c < channels; ++c)
      frames[i * channels + c] = 0.5f * mono[i] * (1.0f - 0.5f * c);
  const sf_count_t wrote = sf_writef_float(f, frames.data(), static_cast<sf_count_t>(mono.size()));
  sf_close(f);
  if (wrote != static_cast<sf_count_t>(mono.size())) {
    std::remove(path.c_str());
    return "";
  }
  std::string bytes = ReadFile(path);
  std::remove(path.c_str());
  return bytes;
}

// Largest normalized cross-correlation of a and b over lags in [-max_lag, max_lag].
double BestCorrelation(const std::vector<float>& a, const std::vector<float>& b, int max_lag) {
  double best = -1;
  for (int lag = -max_lag; lag <= max_lag; ++lag) {
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      const long j = static_cast<long>(i) + lag;
      if (j < 0 || j >= static_cast<long>(b.size())) continue;
      ab += static_cast<double>(a[i]) * b[j];
      aa += static_cast<double>(a[i]) * a[i];
      bb += static_cast<double>(b[j]) * b[j];
    }
    if (aa > 0 && bb > 0) best = std::max(best, ab / std::sqrt(aa * bb));
  }
  return best;
}

TEST(AudioDecodeTest, SpeechInEveryFormatAndRate) {
  ASSERT_FALSE(SpeechWav().empty()) << "espeak-ng could not make the test speech";
  const Audio& speech = Speech();
  ASSERT_EQ(speech.sample_rate, 22050);
  ASSERT_EQ(speech.source_channels, 1);
  ASSERT_GT(speech.seconds(), 1.5);
  auto ref16 = Resample(speech.samples, 22050, 16000);
  ASSERT_TRUE(ref16.ok()) << ref16.status();
  struct Format {
    const char* name;
    int format;
    bool lossy;
  };
  const Format formats[] = {
      {"wav u8", SF_FORMAT_WAV | SF_FORMAT_PCM_U8, false},
      {"wav s16", SF_FORMAT_WAV | SF_FORMAT_PCM_16, false},
      {"wav s24", SF_FORMAT_WAV | SF_FORMAT_PCM_24, false},
      {"wav s32", SF_FORMAT_WAV | SF_FORMAT_PCM_32, false},
      {"wav float", SF_FORMAT_WAV | SF_FORMAT_FLOAT, false},
      {"flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16, false},
      {"ogg vorbis", SF_FORMAT_OGG | SF_FORMAT_VORBIS, true},
      {"ogg opus", SF_FORMAT_OGG | SF_FORMAT_OPUS, true},
      {"mp3", SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III, true},
  };
  int checked = 0;
  for (int rate : {8000, 22050, 44100, 48000}) {
    auto at_rate = Resample(speech.samples, 22050, rate);
    ASSERT_TRUE(at_rate.ok());
    for (int channels : {1, 2}) {
      for (const Format& f : formats) {
        const std::string what =
            std::string(f.name) + " " + std::to_string(rate) + " Hz x" + std::to_string(channels);
        const std::string bytes = Encode(*at_rate, rate, channels, f.format);
        if (bytes.empty()) {
          // Opus is only written at its own rates (8/12/16/24/48 kHz), MP3 at MPEG rates.
          EXPECT_TRUE(f.lossy) << what << ": libsndfile could not write a lossless format";
          continue;
        }
        auto got = DecodeAudio(bytes);
        ASSERT_TRUE(got.ok()) << what << ": " << got.status();
        EXPECT_EQ(got->sample_rate, rate) << what;
        EXPECT_EQ(got->source_channels, channels) << what;
        EXPECT_NEAR(got->seconds(), speech.seconds(), f.lossy ? 0.1 : 1e-3) << what;
        auto back16 = Resample(got->samples, rate, 16000);
        ASSERT_TRUE(back16.ok());
        // Stereo is averaged: 0.75 of the mono signal.
        const double c = BestCorrelation(*ref16, *back16, f.lossy ? 2000 : 2);
        EXPECT_GT(c, f.lossy ? 0.8 : (rate == 8000 ? 0.95 : 0.99)) << what;
        ++checked;
      }
    }
  }
  EXPECT_GE(checked, 4 * 2 * 7) << "too few formats could be written to test";
}

TEST(AudioDecodeTest, LimitsAreCheckedFromTheHeader) {
  const Audio& speech = Speech();
  ASSERT_FALSE(speech.samples.empty());
  const std::string wav = SpeechWav();
  AudioLimits l;
  l.max_seconds = 0.5;
  auto r = DecodeAudio(wav, l);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("exceed the limit of 0.5"), std::string::npos) << r.status();
  l = AudioLimits{};
  l.max_bytes = 1000;
  r = DecodeAudio(wav, l);
  EXPECT_NE(r.status().message().find("bytes exceed the limit of 1000"), std::string::npos)
      << r.status();
  l = AudioLimits{};
  l.max_channels = 1;
  r = DecodeAudio(Encode(speech.samples, 22050, 2, SF_FORMAT_WAV | SF_FORMAT_PCM_16), l);
  EXPECT_NE(r.status().message().find("2 channels (1 to 1 are accepted)"), std::string::npos)
      << r.status();
  l = AudioLimits{};
  l.min_sample_rate = 16000;
  r = DecodeAudio(
      wav.size() ? Encode(speech.samples, 8000, 1, SF_FORMAT_WAV | SF_FORMAT_PCM_16) : wav, l);
  EXPECT_NE(r.status().message().find("sample rate 8000 Hz"), std::string::npos) << r.status();
}

TEST(AudioDecodeTest, BrokenDataIsInvalidArgumentNeverACrash) {
  const Audio& speech = Speech();
  ASSERT_FALSE(speech.samples.empty());
  for (const std::string& bad :
       {std::string(), std::string("RIFF"), std::string(4096, '\0'),
        std::string("not audio at all"), std::string("RIFF\xff\xff\xff\x7fWAVEfmt ", 16)}) {
    auto r = DecodeAudio(bad);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(r.status().message().rfind("audio: ", 0), 0u) << r.status();
  }
  // Cuts of files that declare their length (WAV, FLAC) are errors; a cut Ogg stream is a
  // shorter stream (it has no length to contradict), so there: never more than the whole.
  for (int format : {SF_FORMAT_WAV | SF_FORMAT_PCM_16, SF_FORMAT_WAV | SF_FORMAT_FLOAT,
                     SF_FORMAT_FLAC | SF_FORMAT_PCM_16, SF_FORMAT_OGG | SF_FORMAT_VORBIS}) {
    const std::string full = Encode(speech.samples, 22050, 1, format);
    ASSERT_FALSE(full.empty());
    const bool declares_length = (format & SF_FORMAT_TYPEMASK) != SF_FORMAT_OGG;
    int cuts = 0, errors = 0;
    for (size_t cut = 0; cut < full.size(); cut += 1 + full.size() / 97) {
      auto r = DecodeAudio(std::string_view(full).substr(0, cut));
      ++cuts;
      if (!r.ok()) {
        EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
        ++errors;
      } else {
        EXPECT_FALSE(declares_length) << "format " << format << " cut at " << cut << " decoded";
        EXPECT_LE(r->samples.size(), speech.samples.size());
      }
    }
    if (!declares_length) {
      EXPECT_GT(errors, cuts / 4) << "format " << format;
    }
  }
  // A WAV cut in its data: the header declares more frames than there are.
  const std::string wav = SpeechWav();
  auto r = DecodeAudio(std::string_view(wav).substr(0, wav.size() / 2));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("truncated"), std::string::npos) << r.status();
}

TEST(ResampleTest, KeepsPitchAndLength) {
  constexpr int kIn = 44100, kOut = 16000;
  std::vector<float> tone(kIn);  // 1 s of 440 Hz
  for (int i = 0; i < kIn; ++i) tone[i] = 0.5f * std::sin(2 * M_PI * 440.0 * i / kIn);
  auto out = Resample(tone, kIn, kOut);
  ASSERT_TRUE(out.ok());
  ASSERT_EQ(out->size(), 16000u);
  double err = 0;  // away from the edges the output is the same sine at the new rate
  for (int i = 2000; i < 14000; ++i) {
    err = std::max(err, std::abs((*out)[i] - 0.5 * std::sin(2 * M_PI * 440.0 * i / kOut)));
  }
  EXPECT_LT(err, 1e-3);
  auto same = Resample(tone, kIn, kIn);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(*same, tone);
  EXPECT_FALSE(Resample(tone, 0, 16000).ok());
}

// Runs whisper_reference.py on `samples` (at 16 kHz) and compares every value.
void ExpectMatchesNumpy(const std::vector<float>& samples, const WhisperFeatureConfig& c,
                        const std::string& what) {
  auto got = WhisperLogMel(samples, c);
  ASSERT_TRUE(got.ok()) << what << ": " << got.status();
  const std::string in = TempPath("in.f32"), out = TempPath("out.f32");
  {
    std::ofstream f(in, std::ios::binary);
    f.write(reinterpret_cast<const char*>(samples.data()),
            static_cast<std::streamsize>(samples.size() * sizeof(float)));
  }
  const std::string cmd =
      std::string(MUSE_SYSTEM_PYTHON3) + " " + MUSE_AUDIO_TEST_DIR + "/whisper_reference.py " + in +
      " " + out + " " + std::to_string(c.feature_size) + " " + std::to_string(c.n_fft) + " " +
      std::to_string(c.hop_length) + " " + std::to_string(c.chunk_length) + " " +
      std::to_string(c.sampling_rate) + " " + (c.do_normalize ? "1" : "0");
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const std::string ref = ReadFile(out);
  std::remove(in.c_str());
  std::remove(out.c_str());
  const size_t n = static_cast<size_t>(got->n_mels) * got->n_frames;
  ASSERT_EQ(ref.size(), n * sizeof(float) + sizeof(int32_t)) << what;
  std::vector<float> want(n);
  std::memcpy(want.data(), ref.data(), n * sizeof(float));
  int32_t valid = 0;
  std::memcpy(&valid, ref.data() + n * sizeof(float), sizeof(valid));
  EXPECT_EQ(got->n_frames, c.nb_max_frames()) << what;
  EXPECT_EQ(got->valid_frames, valid) << what;
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = std::abs(static_cast<double>(got->data[i]) - want[i]);
    if (d > worst) worst = d, at = i;
  }
  EXPECT_LE(worst, 1e-5) << what << ": mel " << at / got->n_frames << " frame "
                         << at % got->n_frames << " got " << got->data[at] << " want " << want[at];
}

TEST(WhisperFeaturesTest, MatchesTheNumpyReference) {
  const Audio& speech = Speech();
  ASSERT_FALSE(speech.samples.empty());
  auto speech16 = Resample(speech.samples, speech.sample_rate, 16000);
  ASSERT_TRUE(speech16.ok());
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 0.3f);
  std::vector<float> noise(3 * 16000 + 77);
  for (float& v : noise) v = nd(rng);
  std::vector<float> long_mix(31 * 16000);  // longer than the chunk: truncated
  for (size_t i = 0; i < long_mix.size(); ++i)
    long_mix[i] = (*speech16)[i % speech16->size()] + 0.01f * nd(rng);
  WhisperFeatureConfig c;
  ExpectMatchesNumpy(*speech16, c, "speech");
  ExpectMatchesNumpy(noise, c, "noise");
  ExpectMatchesNumpy(std::vector<float>(16000, 0.0f), c, "silence");
  ExpectMatchesNumpy(long_mix, c, "31 s");
  ExpectMatchesNumpy(std::vector<float>(123, 0.25f), c, "123 samples");
  WhisperFeatureConfig large = c;  // whisper-large-v3
  large.feature_size = 128;
  ExpectMatchesNumpy(*speech16, large, "128 mels");
  WhisperFeatureConfig norm = c;
  norm.do_normalize = true;
  ExpectMatchesNumpy(noise, norm, "normalized");
  WhisperFeatureConfig small = c;  // an odd, short configuration
  small.n_fft = 256;
  small.hop_length = 100;
  small.chunk_length = 2;
  small.feature_size = 40;
  ExpectMatchesNumpy(noise, small, "n_fft 256 hop 100 2 s 40 mels");
}

TEST(WhisperFeaturesTest, SlaneyFiltersAreTrianglesOfUnitArea) {
  // Slaney normalization: each triangle's area in Hz is 1.
  const int bins = 201, mels = 80;
  const std::vector<double> f = SlaneyMelFilters(bins, mels, 0, 8000, 16000);
  const double df = 8000.0 / (bins - 1);
  for (int m = 0; m < mels; ++m) {
    double area = 0;
    for (int k = 0; k < bins; ++k) area += f[k * mels + m] * df;
    EXPECT_NEAR(area, 1.0, m < 3 ? 0.35 : 0.1) << "mel " << m;  // low mels span few bins
  }
}

TEST(WhisperFeaturesTest, ConfigParsesAndErrorsNameTheKey) {
  auto c = ParseWhisperFeatureConfig(
      R"({"feature_extractor_type":"WhisperFeatureExtractor","feature_size":128,)"
      R"("sampling_rate":16000,"hop_length":160,"n_fft":400,"chunk_length":30,)"
      R"("padding_value":0.0,"return_attention_mask":true})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->feature_size, 128);
  EXPECT_EQ(c->nb_max_frames(), 3000);
  for (const auto& [text, key] : std::vector<std::pair<std::string, std::string>>{
           {R"({"feature_size":"80"})", "feature_size"},
           {R"({"hop_length":0})", "hop_length"},
           {R"({"dither":0.5})", "dither"},
           {R"({"feature_extractor_type":"ClapFeatureExtractor"})", "feature_extractor_type"},
           {R"({"do_normalize":1})", "do_normalize"}}) {
    auto r = ParseWhisperFeatureConfig(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_NE(r.status().message().find("'" + key + "'"), std::string::npos) << r.status();
  }
  EXPECT_FALSE(ParseWhisperFeatureConfig("{").ok());
  EXPECT_FALSE(WhisperLogMel({}, WhisperFeatureConfig{}).ok());
}

}  // namespace
}  // namespace muse::audio
