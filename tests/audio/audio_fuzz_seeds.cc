// Writes audio_fuzzer's seed corpus into the directory given: a short voiced tone in every format
// this libsndfile writes (WAV 8/16/24/32-bit and float, FLAC, Ogg Vorbis / Opus, MP3, AIFF),
// mono and stereo.
#include <sndfile.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: audio_fuzz_seeds DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  struct Format {
    const char* name;
    int format;
    int rate;
  };
  const Format formats[] = {
      {"u8.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_U8, 8000},
      {"s16.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000},
      {"s24.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_24, 22050},
      {"s32.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_32, 44100},
      {"float.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, 48000},
      {"s16.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 16000},
      {"vorbis.ogg", SF_FORMAT_OGG | SF_FORMAT_VORBIS, 22050},
      {"opus.ogg", SF_FORMAT_OGG | SF_FORMAT_OPUS, 48000},
      {"l3.mp3", SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III, 44100},
      {"s16.aiff", SF_FORMAT_AIFF | SF_FORMAT_PCM_16, 11025},
  };
  int written = 0;
  for (const Format& f : formats) {
    for (int channels : {1, 2}) {
      SF_INFO info{};
      info.samplerate = f.rate;
      info.channels = channels;
      info.format = f.format;
      if (!sf_format_check(&info)) continue;
      const std::string path = dir + "/" + std::to_string(channels) + "ch_" + f.name;
      SNDFILE* s = sf_open(path.c_str(), SFM_WRITE, &info);
      if (s == nullptr) continue;
      const int frames = f.rate / 20;  // 50 ms
      std::vector<float> x(static_cast<size_t>(frames) * channels);
      for (int i = 0; i < frames; ++i) {
        const double t = static_cast<double>(i) / f.rate;
        for (int c = 0; c < channels; ++c)
          x[static_cast<size_t>(i) * channels + c] = static_cast<float>(
              0.4 * std::sin(2 * M_PI * (220.0 + 110.0 * c) * t) * (1.0 + 0.5 * std::sin(40 * t)));
      }
      sf_writef_float(s, x.data(), frames);
      sf_close(s);
      ++written;
    }
  }
  return written > 0 ? 0 : 1;
}
