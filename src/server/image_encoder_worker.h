// The one encoder thread, for both modalities: owns the vision tower and the audio tower (both
// single-caller) and encodes the images of every job waiting in its queue together, in one
// EncodeBatch call ("images of one step are encoded as a batch"), then their distinct audio clips
// one by one (the Qwen2-Audio tower takes one clip a call). One thread rather than a second for
// audio: both towers run ATen on the same CPU pool, so a second thread only splits the cores
// (docs/ARCHITECTURE.md has the measurement). gRPC threads only Submit and return; each job's
// `done` runs on the worker thread once its embeddings exist. Plain C++ (the encoder headers have
// no libtorch).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "models/llava/image_encoder.h"
#include "models/qwen2_audio/audio_encoder.h"
#include "src/common/status.h"
#include "src/server/audio_input.h"
#include "src/server/metrics.h"
#include "src/vision/encoder_cache.h"
#include "src/vision/image_input.h"

namespace muse::server {

class ImageEncoderWorker {
 public:
  struct Job {
    std::vector<const vision::PreparedImage*> images;  // owned by the submitter until `done` runs
    std::vector<const PreparedAudio*> audios;          // likewise
    std::function<bool()> cancelled;  // true: skip (checked when the batch is formed)
    // Called exactly once on the worker thread (or in Stop): the embeddings in `images` order, then
    // in `audios` order; Cancelled when skipped, Unavailable after Stop, Internal when an encoder
    // fails (returns an error or throws) on this job's own inputs: a batch that fails is retried
    // job by job, so a bad input fails only its request.
    std::function<void(absl::StatusOr<std::vector<vision::ImageEmbedding>>)> done;
  };

  // `cache` and `metrics` outlive the worker. `delay` (tests only) sleeps before each batch so a
  // test can cancel "while the image is being encoded".
  // Either encoder may be null (a model without that modality); a job with inputs for a missing
  // encoder fails with Internal.
  ImageEncoderWorker(std::unique_ptr<models::llava::ImageEncoder> encoder,
                     vision::EncoderCache* cache, Metrics* metrics,
                     absl::Duration delay = absl::ZeroDuration(),
                     std::unique_ptr<models::qwen2_audio::AudioEncoder> audio_encoder = nullptr);
  ~ImageEncoderWorker();

  void Submit(Job job);  // never waits on the encoder
  // Fails queued jobs with Unavailable, waits for the batch in progress, joins. Idempotent.
  void Stop();

 private:
  void Loop();
  void RunBatch(std::vector<Job> jobs);
  // Encodes the distinct images of `live` in one batch and delivers; when a batch of several jobs
  // fails, each job is retried alone so that only the jobs whose images fail get the error.
  void EncodeJobs(std::vector<Job> live);
  // EncodeBatch with any exception turned into Internal.
  absl::StatusOr<std::vector<std::vector<float>>> Encode(
      const std::vector<const vision::PixelValues*>& batch);
  // The audio tower on each clip, likewise; rows[i] = NumAudioTokens of clip i.
  absl::StatusOr<std::vector<std::vector<float>>> EncodeAudio(
      const std::vector<const PreparedAudio*>& clips);

  std::unique_ptr<models::llava::ImageEncoder> encoder_;              // worker thread only
  std::unique_ptr<models::qwen2_audio::AudioEncoder> audio_encoder_;  // worker thread only
  vision::EncoderCache* const cache_;
  Metrics* const metrics_;
  const absl::Duration delay_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;  // guarded by mu_
  bool stop_ = false;      // guarded by mu_
  std::thread thread_;
};

}  // namespace muse::server
