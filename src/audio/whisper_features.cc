#include "src/audio/whisper_features.h"

#include <fftw3.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace muse::audio {
namespace {

using json = nlohmann::json;

absl::Status KeyError(const std::string& key, const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat("preprocessor_config.json: key '", key, "' ", what));
}

absl::Status ReadInt(const json& j, const char* key, int lo, int hi, int* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number_integer()) return KeyError(key, "must be an integer");
  const auto v = it->get<int64_t>();
  if (v < lo || v > hi) return KeyError(key, absl::StrCat("must be in [", lo, ", ", hi, "]"));
  *out = static_cast<int>(v);
  return absl::OkStatus();
}

double HertzToMel(double f) {  // Slaney: linear below 1 kHz, logarithmic above
  constexpr double kMinLogHertz = 1000.0, kMinLogMel = 15.0;
  const double logstep = 27.0 / std::log(6.4);
  return f >= kMinLogHertz ? kMinLogMel + std::log(f / kMinLogHertz) * logstep : 3.0 * f / 200.0;
}

double MelToHertz(double m) {
  constexpr double kMinLogHertz = 1000.0, kMinLogMel = 15.0;
  const double logstep = std::log(6.4) / 27.0;
  return m >= kMinLogMel ? kMinLogHertz * std::exp(logstep * (m - kMinLogMel)) : 200.0 * m / 3.0;
}

// numpy.linspace(a, b, n): a + i * step, the last value exactly b.
std::vector<double> Linspace(double a, double b, int n) {
  std::vector<double> v(n);
  if (n == 1) {
    v[0] = a;
    return v;
  }
  const double step = (b - a) / (n - 1);
  for (int i = 0; i < n; ++i) v[i] = a + i * step;
  v[n - 1] = b;
  return v;
}

// An FFTW plan for real input of size n, for unaligned arrays (executed with
// fftw_execute_dft_r2c on the caller's). FFTW's planner is not thread-safe, so plans are made and
// destroyed under one mutex; FFTW_ESTIMATE plans without timing runs (deterministic, ~0.1 ms).
class R2cPlan {
 public:
  explicit R2cPlan(int n) {
    std::vector<double> in(n);
    std::vector<fftw_complex> out(n / 2 + 1);
    std::lock_guard lock(Mutex());
    plan_ = fftw_plan_dft_r2c_1d(n, in.data(), out.data(), FFTW_ESTIMATE | FFTW_UNALIGNED);
  }
  ~R2cPlan() {
    std::lock_guard lock(Mutex());
    fftw_destroy_plan(plan_);
  }
  R2cPlan(const R2cPlan&) = delete;
  R2cPlan& operator=(const R2cPlan&) = delete;
  void Execute(double* in, fftw_complex* out) const { fftw_execute_dft_r2c(plan_, in, out); }

 private:
  static std::mutex& Mutex() {
    static std::mutex mu;
    return mu;
  }
  fftw_plan plan_;
};

}  // namespace

absl::StatusOr<WhisperFeatureConfig> ParseWhisperFeatureConfig(const std::string& json_text) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception&) {
    return absl::InvalidArgumentError("preprocessor_config.json: not valid JSON");
  }
  if (!j.is_object()) return absl::InvalidArgumentError("preprocessor_config.json: not an object");
  WhisperFeatureConfig c;
  if (auto t = j.find("feature_extractor_type");
      t != j.end() && (!t->is_string() || *t != "WhisperFeatureExtractor")) {
    return KeyError("feature_extractor_type", "must be \"WhisperFeatureExtractor\"");
  }
  RETURN_IF_ERROR(ReadInt(j, "feature_size", 1, 512, &c.feature_size));
  RETURN_IF_ERROR(ReadInt(j, "sampling_rate", 1000, 192000, &c.sampling_rate));
  RETURN_IF_ERROR(ReadInt(j, "hop_length", 1, 1 << 16, &c.hop_length));
  RETURN_IF_ERROR(ReadInt(j, "n_fft", 2, 1 << 16, &c.n_fft));
  RETURN_IF_ERROR(ReadInt(j, "chunk_length", 1, 3600, &c.chunk_length));
  if (auto it = j.find("padding_value"); it != j.end() && !it->is_null()) {
    if (!it->is_number()) return KeyError("padding_value", "must be a number");
    c.padding_value = it->get<double>();
  }
  if (auto it = j.find("do_normalize"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) return KeyError("do_normalize", "must be true or false");
    c.do_normalize = it->get<bool>();
  }
  if (auto it = j.find("dither"); it != j.end() && !it->is_null()) {
    if (!it->is_number()) return KeyError("dither", "must be a number");
    if (it->get<double>() != 0.0) return KeyError("dither", "must be 0 (noise is not supported)");
  }
  if (static_cast<int64_t>(c.chunk_length) * c.sampling_rate > (int64_t{1} << 30)) {
    return KeyError("chunk_length", "times sampling_rate exceeds 2^30 samples");
  }
  if (c.n_fft / 2 >= c.n_samples()) return KeyError("n_fft", "must be shorter than the chunk");
  return c;
}

std::vector<double> SlaneyMelFilters(int num_frequency_bins, int num_mel_filters,
                                     double min_frequency, double max_frequency,
                                     int sampling_rate) {
  const std::vector<double> mel =
      Linspace(HertzToMel(min_frequency), HertzToMel(max_frequency), num_mel_filters + 2);
  std::vector<double> filter_freqs(mel.size());
  for (size_t i = 0; i < mel.size(); ++i) filter_freqs[i] = MelToHertz(mel[i]);
  // HF: fft_freqs = np.linspace(0, sampling_rate // 2, num_frequency_bins) (integer Nyquist).
  const int nyquist = sampling_rate / 2;
  const std::vector<double> fft_freqs = Linspace(0, nyquist, num_frequency_bins);
  std::vector<double> out(static_cast<size_t>(num_frequency_bins) * num_mel_filters);
  for (int f = 0; f < num_frequency_bins; ++f) {
    for (int m = 0; m < num_mel_filters; ++m) {
      // slopes = filter_freqs - fft_freq; down = -slopes[m] / diff[m], up = slopes[m+2] / diff[m+1]
      const double down =
          -(filter_freqs[m] - fft_freqs[f]) / (filter_freqs[m + 1] - filter_freqs[m]);
      const double up =
          (filter_freqs[m + 2] - fft_freqs[f]) / (filter_freqs[m + 2] - filter_freqs[m + 1]);
      const double enorm = 2.0 / (filter_freqs[m + 2] - filter_freqs[m]);
      out[static_cast<size_t>(f) * num_mel_filters + m] = std::max(0.0, std::min(down, up)) * enorm;
    }
  }
  return out;
}

absl::StatusOr<LogMel> WhisperLogMel(std::span<const float> samples,
                                     const WhisperFeatureConfig& c) {
  if (samples.empty()) return absl::InvalidArgumentError("audio: no samples");
  const int n = c.n_samples();
  const int used = static_cast<int>(std::min<size_t>(samples.size(), n));
  // Padded / truncated waveform (float32, as HF's pad returns), optionally normalized.
  std::vector<float> wave(n, static_cast<float>(c.padding_value));
  std::copy(samples.begin(), samples.begin() + used, wave.begin());
  if (c.do_normalize) {
    double mean = 0;
    for (int i = 0; i < used; ++i) mean += wave[i];
    mean /= used;
    double var = 0;
    for (int i = 0; i < used; ++i) var += (wave[i] - mean) * (wave[i] - mean);
    var /= used;
    const double scale = 1.0 / std::sqrt(var + 1e-7);
    for (int i = 0; i < used; ++i) wave[i] = static_cast<float>((wave[i] - mean) * scale);
  }
  // Centre: reflect-pad n_fft / 2 on both sides (numpy's "reflect": the edge is not repeated).
  const int pad = c.n_fft / 2;
  std::vector<double> x(static_cast<size_t>(n) + 2 * static_cast<size_t>(pad));
  for (int i = 0; i < n; ++i) x[pad + i] = wave[i];
  for (int i = 1; i <= pad; ++i) {
    x[pad - i] = wave[std::min(i, n - 1)];
    x[pad + n - 1 + i] = wave[std::max(0, n - 1 - i)];
  }
  const int num_frames = 1 + (static_cast<int>(x.size()) - c.n_fft) / c.hop_length;
  const int bins = c.n_fft / 2 + 1;
  std::vector<double> window(c.n_fft);  // periodic Hann: np.hanning(n_fft + 1)[:-1]
  for (int i = 0; i < c.n_fft; ++i) {
    window[i] = 0.5 - 0.5 * std::cos(2.0 * M_PI * i / c.n_fft);
  }
  const std::vector<double> filters =
      SlaneyMelFilters(bins, c.feature_size, 0.0, 8000.0, c.sampling_rate);
  const R2cPlan plan(c.n_fft);
  std::vector<double> frame(c.n_fft), power(bins);
  std::vector<fftw_complex> spec(bins);
  const int out_frames = num_frames - 1;  // HF drops the last frame
  std::vector<double> logmel(static_cast<size_t>(c.feature_size) * out_frames);
  for (int t = 0; t < out_frames; ++t) {
    const double* src = x.data() + static_cast<size_t>(t) * c.hop_length;
    for (int i = 0; i < c.n_fft; ++i) frame[i] = src[i] * window[i];
    plan.Execute(frame.data(), spec.data());
    for (int k = 0; k < bins; ++k) {
      // HF keeps the spectrum as complex64, then takes its magnitude in float64.
      const double re = static_cast<float>(spec[k][0]), im = static_cast<float>(spec[k][1]);
      const double mag = std::hypot(re, im);
      power[k] = mag * mag;
    }
    for (int m = 0; m < c.feature_size; ++m) {
      double acc = 0;
      for (int k = 0; k < bins; ++k)
        acc += filters[static_cast<size_t>(k) * c.feature_size + m] * power[k];
      logmel[static_cast<size_t>(m) * out_frames + t] = std::log10(std::max(1e-10, acc));
    }
  }
  LogMel out;
  out.n_mels = c.feature_size;
  out.n_frames = out_frames;
  out.valid_frames = std::min(out_frames, (used + c.hop_length - 1) / c.hop_length);
  out.data.resize(logmel.size());
  float mx = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < logmel.size(); ++i) {
    out.data[i] = static_cast<float>(logmel[i]);
    mx = std::max(mx, out.data[i]);
  }
  const float floor = mx - 8.0f;
  for (float& v : out.data) v = (std::max(v, floor) + 4.0f) / 4.0f;
  return out;
}

}  // namespace muse::audio
