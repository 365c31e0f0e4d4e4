// One encoder thread for both modalities, or a second thread for audio? (issue 19). Loads the
// image and audio towers of a Muse model directory (default: models/muse-tiny) and runs a mixed
// load -- `rounds` x (one batch of 4 images + one 10 s clip) -- once on one thread (images then
// audio, as ImageEncoderWorker does) and once with each tower on a thread of its own. ATen's
// intra-op pool is shared either way. Prints both wall times on stdout.
//   encoder_threads_bench [model_dir] [rounds] [threads]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "models/llava/image_encoder.h"
#include "models/qwen2_audio/audio_encoder.h"

namespace {

using Clock = std::chrono::steady_clock;
double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

}  // namespace

int main(int argc, char** argv) {
  namespace m = muse::models;
  const std::string dir = argc > 1 ? argv[1] : "models/muse-tiny";
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 20;
  const int threads = argc > 3 ? std::atoi(argv[3]) : 0;
  auto ie = m::llava::CreateImageEncoder(dir, {.dtype = "float32", .num_threads = threads});
  auto ae = m::qwen2_audio::CreateAudioEncoder(dir, {.dtype = "float32", .num_threads = threads});
  if (!ie.ok() || !ae.ok()) {
    std::fprintf(stderr, "load failed: %s %s\n", ie.status().ToString().c_str(),
                 ae.status().ToString().c_str());
    return 1;
  }
  const int size = static_cast<int>((*ie)->config().vision.image_size);
  std::mt19937 rng(1);
  std::normal_distribution<float> n;
  std::vector<muse::vision::PixelValues> images(4);
  std::vector<const muse::vision::PixelValues*> batch;
  for (auto& im : images) {
    im.height = im.width = size;
    im.data.resize(size_t{3} * size * size);
    for (float& x : im.data) x = n(rng);
    batch.push_back(&im);
  }
  const auto& ac = (*ae)->config().audio;
  muse::audio::LogMel mel{
      static_cast<int>(ac.num_mel_bins), static_cast<int>(ac.input_frames()), 1000, {}};
  mel.data.resize(static_cast<size_t>(mel.n_mels) * mel.n_frames);
  for (float& x : mel.data) x = n(rng) * 0.5f;
  auto images_work = [&] {
    for (int r = 0; r < rounds; ++r) {
      if (!(*ie)->EncodeBatch(batch).ok()) std::abort();
    }
  };
  auto audio_work = [&] {
    for (int r = 0; r < rounds; ++r) {
      if (!(*ae)->Encode(mel).ok()) std::abort();
    }
  };
  images_work();  // warm-up
  audio_work();
  auto t0 = Clock::now();
  for (int r = 0; r < rounds; ++r) {  // one thread: each round's images, then its clip
    if (!(*ie)->EncodeBatch(batch).ok() || !(*ae)->Encode(mel).ok()) std::abort();
  }
  const double one = Ms(Clock::now() - t0);
  t0 = Clock::now();
  std::thread a(images_work), b(audio_work);
  a.join();
  b.join();
  const double two = Ms(Clock::now() - t0);
  t0 = Clock::now();
  images_work();
  const double images_alone = Ms(Clock::now() - t0);
  t0 = Clock::now();
  audio_work();
  const double audio_alone = Ms(Clock::now() - t0);
  std::printf(
      "%s, %d rounds of (4 images + one 10 s clip), %u CPUs: one thread %.1f ms, two threads %.1f "
      "ms (images alone %.1f ms, audio alone %.1f ms)\n",
      dir.c_str(), rounds, std::thread::hardware_concurrency(), one, two, images_alone,
      audio_alone);
  return 0;
}
