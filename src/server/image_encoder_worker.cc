#include "src/server/image_encoder_worker.h"

#include <exception>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "src/common/logging.h"

namespace muse::server {

ImageEncoderWorker::ImageEncoderWorker(
    std::unique_ptr<models::llava::ImageEncoder> encoder, vision::EncoderCache* cache,
    Metrics* metrics, absl::Duration delay,
    std::unique_ptr<models::qwen2_audio::AudioEncoder> audio_encoder)
    : encoder_(std::move(encoder)),
      audio_encoder_(std::move(audio_encoder)),
      cache_(cache),
      metrics_(metrics),
      delay_(delay) {
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
  if (batch.empty()) return std::vector<std::vector<float>>{};
  if (!encoder_) return absl::InternalError("the model has no image encoder");
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

absl::StatusOr<std::vector<std::vector<float>>> ImageEncoderWorker::EncodeAudio(
    const std::vector<const PreparedAudio*>& clips) {
  std::vector<std::vector<float>> out;
  if (clips.empty()) return out;
  if (!audio_encoder_) return absl::InternalError("the model has no audio encoder");
  const auto hidden = static_cast<size_t>(audio_encoder_->hidden_size());
  for (const PreparedAudio* clip : clips) {
    absl::StatusOr<std::vector<float>> rows;
    try {  // as above: the audio tower is ATen too
      rows = audio_encoder_->Encode(clip->features);
    } catch (const std::exception& e) {
      rows = absl::InternalError(absl::StrCat("audio encoder threw: ", e.what()));
    } catch (...) {
      rows = absl::InternalError("audio encoder threw a non-standard exception");
    }
    if (!rows.ok()) return rows.status();
    const auto want = static_cast<size_t>(models::qwen2_audio::Qwen2AudioConfig::NumAudioTokens(
                          clip->features.valid_frames)) *
                      hidden;
    if (rows->size() != want) {
      return absl::InternalError(
          absl::StrCat("audio encoder returned ", rows->size(), " floats, expected ", want));
    }
    out.push_back(std::move(*rows));
  }
  return out;
}

void ImageEncoderWorker::EncodeJobs(std::vector<Job> live) {
  struct DigestHash {
    size_t operator()(const vision::ImageDigest& d) const { return static_cast<size_t>(d.key64()); }
  };
  std::unordered_map<vision::ImageDigest, size_t, DigestHash> slot;   // digest -> batch index
  std::unordered_map<vision::ImageDigest, size_t, DigestHash> aslot;  // digest -> clip index
  std::vector<const vision::PixelValues*> batch;
  std::vector<const PreparedAudio*> clips;
  for (const Job& j : live) {
    for (const vision::PreparedImage* im : j.images) {
      if (slot.emplace(im->digest, batch.size()).second) batch.push_back(&im->pixels);
    }
    for (const PreparedAudio* a : j.audios) {
      if (aslot.emplace(a->digest, clips.size()).second) clips.push_back(a);
    }
  }
  const absl::Time start = absl::Now();
  auto encoded = Encode(batch);
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (encoded.ok() && encoded->size() != batch.size()) {
    encoded = absl::InternalError(
        absl::StrCat("encoder returned ", encoded->size(), " embeddings for ", batch.size()));
  }
  const absl::Time audio_start = absl::Now();
  absl::StatusOr<std::vector<std::vector<float>>> audio_encoded =
      encoded.ok() ? EncodeAudio(clips) : absl::StatusOr<std::vector<std::vector<float>>>{};
  const double audio_seconds = absl::ToDoubleSeconds(absl::Now() - audio_start);
  const absl::Status st = encoded.ok() ? audio_encoded.status() : encoded.status();
  if (!st.ok() && live.size() > 1) {
    // One request's input must not fail the others it was batched with: each job alone, so only
    // the jobs whose own inputs fail get the error.
    spdlog::warn("encoder failed on a batch of {} job(s): {}; encoding each job alone", live.size(),
                 st.ToString());
    for (Job& j : live) {
      std::vector<Job> one;
      one.push_back(std::move(j));
      EncodeJobs(std::move(one));
    }
    return;
  }
  if (!st.ok()) {
    spdlog::error("encoder failed on {} image(s) and {} audio clip(s): {}", batch.size(),
                  clips.size(), st.ToString());
    const absl::Status err = absl::InternalError(
        absl::StrCat(encoded.ok() ? "audio" : "image", " encoder failed: ", st.message()));
    for (Job& j : live) j.done(err);
    return;
  }
  if (!batch.empty()) metrics_->RecordImageEncode(static_cast<int64_t>(batch.size()), seconds);
  if (!clips.empty()) {
    metrics_->RecordAudioEncode(static_cast<int64_t>(clips.size()), audio_seconds);
  }
  std::vector<vision::ImageEmbedding> embeddings(batch.size());
  for (const auto& [digest, i] : slot) {
    vision::ImageEmbedding& e = embeddings[i];
    e.num_tokens = static_cast<int32_t>(encoder_->num_image_tokens());
    e.hidden_size = static_cast<int32_t>(encoder_->hidden_size());
    e.digest = digest;
    e.data = std::make_shared<const std::vector<float>>(std::move((*encoded)[i]));
    cache_->Insert(e);
  }
  std::vector<vision::ImageEmbedding> audio_embeddings(clips.size());
  for (const auto& [digest, i] : aslot) {
    vision::ImageEmbedding& e = audio_embeddings[i];
    e.hidden_size = static_cast<int32_t>(audio_encoder_->hidden_size());
    e.num_tokens = static_cast<int32_t>((*audio_encoded)[i].size() / e.hidden_size);
    e.digest = digest;
    e.data = std::make_shared<const std::vector<float>>(std::move((*audio_encoded)[i]));
    cache_->Insert(e);
  }
  spdlog::debug("encoder: {} job(s), {} image(s) in {:.1f} ms, {} audio clip(s) in {:.1f} ms",
                live.size(), batch.size(), seconds * 1e3, clips.size(), audio_seconds * 1e3);
  for (Job& j : live) {
    std::vector<vision::ImageEmbedding> out;
    out.reserve(j.images.size() + j.audios.size());
    for (const vision::PreparedImage* im : j.images) out.push_back(embeddings[slot.at(im->digest)]);
    for (const PreparedAudio* a : j.audios) out.push_back(audio_embeddings[aslot.at(a->digest)]);
    j.done(std::move(out));
  }
}

}  // namespace muse::server
