#include "src/server/image_encoder_worker.h"

#include <exception>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "src/common/logging.h"

namespace muse::server {

ImageEncoderWorker::ImageEncoderWorker(std::unique_ptr<models::llava::ImageEncoder> encoder,
                                       vision::EncoderCache* cache, Metrics* metrics,
                                       absl::Duration delay)
    : encoder_(std::move(encoder)), cache_(cache), metrics_(metrics), delay_(delay) {
  thread_ = std::thread([this] { Loop(); });
}

ImageEncoderWorker::~ImageEncoderWorker() { Stop(); }

void ImageEncoderWorker::Submit(Job job) {
  {
    std::lock_guard lock(mu_);
    if (!stop_) {
      queue_.push_back(std::move(job));
      cv_.notify_one();
      return;
    }
  }
  job.done(absl::UnavailableError("server is shutting down"));
}

void ImageEncoderWorker::Stop() {
  std::deque<Job> left;
  {
    std::lock_guard lock(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
    left.swap(queue_);
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  for (Job& j : left) j.done(absl::UnavailableError("server is shutting down"));
}

void ImageEncoderWorker::Loop() {
  for (;;) {
    std::vector<Job> jobs;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;  // Stop() fails what is queued
      for (Job& j : queue_) jobs.push_back(std::move(j));
      queue_.clear();
    }
    RunBatch(std::move(jobs));
  }
}

void ImageEncoderWorker::RunBatch(std::vector<Job> jobs) {
  if (delay_ > absl::ZeroDuration()) absl::SleepFor(delay_);
  // Drop cancelled jobs; encode each distinct image of the rest once.
  std::vector<Job> live;
  for (Job& j : jobs) {
    if (j.cancelled && j.cancelled()) {
      j.done(absl::CancelledError("cancelled while waiting for the image encoder"));
    } else {
      live.push_back(std::move(j));
    }
  }
  if (!live.empty()) EncodeJobs(std::move(live));
}

absl::StatusOr<std::vector<std::vector<float>>> ImageEncoderWorker::Encode(
    const std::vector<const vision::PixelValues*>& batch) {
  // The vision tower is foreign code (ATen): an exception is this batch's error, never the end of
  // the worker thread.
  try {
    return encoder_->EncodeBatch(batch);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("encoder threw: ", e.what()));
  } catch (...) {
    return absl::InternalError("encoder threw a non-standard exception");
  }
}

void ImageEncoderWorker::EncodeJobs(std::vector<Job> live) {
  struct DigestHash {
    size_t operator()(const vision::ImageDigest& d) const { return static_cast<size_t>(d.key64()); }
  };
  std::unordered_map<vision::ImageDigest, size_t, DigestHash> slot;  // digest -> batch index
  std::vector<const vision::PixelValues*> batch;
  for (const Job& j : live) {
    for (const vision::PreparedImage* im : j.images) {
      if (slot.emplace(im->digest, batch.size()).second) batch.push_back(&im->pixels);
    }
  }
  const absl::Time start = absl::Now();
  auto encoded = Encode(batch);
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (encoded.ok() && encoded->size() != batch.size()) {
    encoded = absl::InternalError(
        absl::StrCat("encoder returned ", encoded->size(), " embeddings for ", batch.size()));
  }
  if (!encoded.ok() && live.size() > 1) {
    // One request's image must not fail the others it was batched with: each job alone, so only
    // the jobs whose own images fail get the error.
    spdlog::warn("image encoder failed on a batch of {} job(s): {}; encoding each job alone",
                 live.size(), encoded.status().ToString());
    for (Job& j : live) {
      std::vector<Job> one;
      one.push_back(std::move(j));
      EncodeJobs(std::move(one));
    }
    return;
  }
  if (!encoded.ok()) {
    spdlog::error("image encoder failed on a batch of {} image(s): {}", batch.size(),
                  encoded.status().ToString());
    const absl::Status st =
        absl::InternalError(absl::StrCat("image encoder failed: ", encoded.status().message()));
    for (Job& j : live) j.done(st);
    return;
  }
  metrics_->RecordImageEncode(static_cast<int64_t>(batch.size()), seconds);
  const auto rows = static_cast<int32_t>(encoder_->num_image_tokens());
  const auto hidden = static_cast<int32_t>(encoder_->hidden_size());
  std::vector<vision::ImageEmbedding> embeddings(batch.size());
  for (const auto& [digest, i] : slot) {
    vision::ImageEmbedding& e = embeddings[i];
    e.num_tokens = rows;
    e.hidden_size = hidden;
    e.digest = digest;
    e.data = std::make_shared<const std::vector<float>>(std::move((*encoded)[i]));
    cache_->Insert(e);
  }
  spdlog::debug("image encoder: {} job(s), {} image(s) in {:.1f} ms", live.size(), batch.size(),
                seconds * 1e3);
  for (Job& j : live) {
    std::vector<vision::ImageEmbedding> out;
    out.reserve(j.images.size());
    for (const vision::PreparedImage* im : j.images) out.push_back(embeddings[slot.at(im->digest)]);
    j.done(std::move(out));
  }
}

}  // namespace muse::server
