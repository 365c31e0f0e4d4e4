#include "src/audio/audio_decode.h"

#include <sndfile.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace muse::audio {
namespace {

// libsndfile reads through these callbacks from memory (SF_VIRTUAL_IO): no temporary file.
struct Memory {
  const char* data;
  sf_count_t size;
  sf_count_t pos;
};

sf_count_t Length(void* user) { return static_cast<Memory*>(user)->size; }

sf_count_t Seek(sf_count_t offset, int whence, void* user) {
  Memory* m = static_cast<Memory*>(user);
  sf_count_t base = 0;
  switch (whence) {
    case SEEK_SET:
      base = 0;
      break;
    case SEEK_CUR:
      base = m->pos;
      break;
    case SEEK_END:
      base = m->size;
      break;
    default:
      return -1;
  }
  const sf_count_t to = base + offset;
  if (to < 0 || to > m->size) return -1;
  m->pos = to;
  return m->pos;
}

sf_count_t Read(void* out, sf_count_t count, void* user) {
  Memory* m = static_cast<Memory*>(user);
  const sf_count_t n = std::max<sf_count_t>(0, std::min(count, m->size - m->pos));
  std::memcpy(out, m->data + m->pos, static_cast<size_t>(n));
  m->pos += n;
  return n;
}

sf_count_t Write(const void*, sf_count_t, void*) { return 0; }  // opened read-only

sf_count_t Tell(void* user) { return static_cast<Memory*>(user)->pos; }

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("audio: ", what));
}

std::string FormatName(int format) {
  auto name = [](int f, int command) -> std::string {
    SF_FORMAT_INFO info{};
    info.format = f;
    if (sf_command(nullptr, command, &info, sizeof(info)) != 0 || info.name == nullptr) return "?";
    return info.name;
  };
  return absl::StrCat(name(format & SF_FORMAT_TYPEMASK, SFC_GET_FORMAT_INFO), ", ",
                      name(format & SF_FORMAT_SUBMASK, SFC_GET_FORMAT_INFO));
}

uint32_t Le32(const char* p) {
  return static_cast<uint32_t>(static_cast<unsigned char>(p[0])) |
         static_cast<uint32_t>(static_cast<unsigned char>(p[1])) << 8 |
         static_cast<uint32_t>(static_cast<unsigned char>(p[2])) << 16 |
         static_cast<uint32_t>(static_cast<unsigned char>(p[3])) << 24;
}

// libsndfile reads a WAV whose data chunk is cut short as a shorter file (it only logs the
// mismatch), so a truncated upload would pass as valid audio. The RIFF chunk list is walked here
// to compare the data chunk's declared size with the bytes present; 0 and 0xFFFFFFFF are the
// placeholders of a streamed WAV, whose length is unknown by design.
absl::Status CheckWavDataChunk(std::string_view b) {
  if (b.size() < 12 || b.substr(0, 4) != "RIFF" || b.substr(8, 4) != "WAVE") {
    return absl::OkStatus();
  }
  size_t pos = 12;
  while (pos + 8 <= b.size()) {
    const uint32_t size = Le32(b.data() + pos + 4);
    if (b.substr(pos, 4) == "data") {
      const size_t present = b.size() - (pos + 8);
      if (size != 0 && size != 0xFFFFFFFFu && size > present) {
        return Invalid(absl::StrCat("truncated: the WAV data chunk declares ", size, " bytes but ",
                                    present, " are present"));
      }
      return absl::OkStatus();
    }
    pos += 8 + static_cast<size_t>(size) + (size & 1);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Audio> DecodeAudio(std::string_view bytes, const AudioLimits& limits) {
  if (bytes.empty()) return Invalid("no data");
  if (static_cast<int64_t>(bytes.size()) > limits.max_bytes) {
    return Invalid(absl::StrCat(bytes.size(), " bytes exceed the limit of ", limits.max_bytes));
  }
  RETURN_IF_ERROR(CheckWavDataChunk(bytes));
  Memory mem{bytes.data(), static_cast<sf_count_t>(bytes.size()), 0};
  SF_VIRTUAL_IO io{Length, Seek, Read, Write, Tell};
  SF_INFO info{};
  SNDFILE* f = sf_open_virtual(&io, SFM_READ, &info, &mem);
  if (f == nullptr) {
    return Invalid(absl::StrCat("not a readable audio file (", sf_strerror(nullptr), ")"));
  }
  struct Closer {
    SNDFILE* f;
    ~Closer() { sf_close(f); }
  } closer{f};

  if (info.channels < 1 || info.channels > limits.max_channels) {
    return Invalid(
        absl::StrCat(info.channels, " channels (1 to ", limits.max_channels, " are accepted)"));
  }
  if (info.samplerate < limits.min_sample_rate || info.samplerate > limits.max_sample_rate) {
    return Invalid(absl::StrCat("sample rate ", info.samplerate, " Hz (", limits.min_sample_rate,
                                " to ", limits.max_sample_rate, " are accepted)"));
  }
  // Frames past the duration limit are never decoded. A header may not know its length (an MP3
  // stream): then the limit is enforced while reading.
  const auto max_frames =
      static_cast<sf_count_t>(std::floor(limits.max_seconds * info.samplerate)) + 1;
  const bool known = info.frames > 0 && info.frames < SF_COUNT_MAX;
  if (known && info.frames > max_frames) {
    return Invalid(absl::StrCat(static_cast<double>(info.frames) / info.samplerate,
                                " seconds exceed the limit of ", limits.max_seconds));
  }

  Audio out;
  out.sample_rate = info.samplerate;
  out.source_channels = info.channels;
  out.format = FormatName(info.format);
  if (known) out.samples.reserve(static_cast<size_t>(info.frames));
  constexpr sf_count_t kChunk = 4096;
  std::vector<float> buf(static_cast<size_t>(kChunk * info.channels));
  sf_count_t total = 0;
  for (;;) {
    const sf_count_t n = sf_readf_float(f, buf.data(), kChunk);
    if (n <= 0) break;
    total += n;
    if (total > max_frames) {
      return Invalid(absl::StrCat("longer than the limit of ", limits.max_seconds, " seconds"));
    }
    for (sf_count_t i = 0; i < n; ++i) {
      const float* frame = buf.data() + i * info.channels;
      float sum = 0;
      for (int c = 0; c < info.channels; ++c) sum += frame[c];
      out.samples.push_back(info.channels == 1 ? sum : sum / static_cast<float>(info.channels));
    }
  }
  if (sf_error(f) != SF_ERR_NO_ERROR) {
    return Invalid(absl::StrCat("corrupt data after ", total, " frames (", sf_strerror(f), ")"));
  }
  if (known && total < info.frames) {
    return Invalid(absl::StrCat("truncated: the data ends after ", total, " of the ", info.frames,
                                " frames its header declares"));
  }
  if (total == 0) return Invalid("no samples");
  for (float s : out.samples) {
    if (!std::isfinite(s)) return Invalid("a sample is not a finite number");
  }
  return out;
}

}  // namespace muse::audio
