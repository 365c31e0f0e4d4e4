// The image-encoder worker when the vision tower fails (issue #15, "the image encoder failing fails
// that request only"): a fake ImageEncoder that returns an error or throws whenever its batch holds
// a poisoned image. The job with that image gets INTERNAL; jobs batched with it get their
// embeddings; the worker thread survives and serves later jobs.
#include "src/server/image_encoder_worker.h"

#include <gtest/gtest.h>

#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

namespace muse::server {
namespace {

constexpr float kPoison = -7.0f;  // first pixel of an image the encoder fails on
constexpr float kGate = 9.0f;     // first pixel of an image whose encoding waits for the test

class FakeEncoder final : public models::llava::ImageEncoder {
 public:
  enum class Mode { kError, kThrow };
  FakeEncoder(Mode mode, std::shared_future<void> gate) : mode_(mode), gate_(std::move(gate)) {
    config_.vision.image_size = 28;
    config_.vision.patch_size = 14;
    config_.text.hidden_size = 8;
  }
  const models::llava::LlavaConfig& config() const override { return config_; }
  absl::StatusOr<std::vector<std::vector<float>>> EncodeBatch(
      const std::vector<const vision::PixelValues*>& images) override {
    {
      std::lock_guard lock(mu_);
      batch_sizes_.push_back(static_cast<int>(images.size()));
    }
    std::vector<std::vector<float>> out;
    for (const vision::PixelValues* im : images) {
      const float v = im->data.at(0);
      if (v == kGate) gate_.wait();
      if (v == kPoison) {
        if (mode_ == Mode::kThrow) throw std::runtime_error("injected: vision tower crashed");
        return absl::InternalError("injected: vision tower failed");
      }
      out.emplace_back(static_cast<size_t>(num_image_tokens() * hidden_size()), v);
    }
    return out;
  }
  std::vector<int> batch_sizes() const {
    std::lock_guard lock(mu_);
    return batch_sizes_;
  }

 private:
  models::llava::LlavaConfig config_;
  const Mode mode_;
  std::shared_future<void> gate_;
  mutable std::mutex mu_;
  std::vector<int> batch_sizes_;
};

std::unique_ptr<vision::PreparedImage> Image(float value, uint8_t digest) {
  auto im = std::make_unique<vision::PreparedImage>();
  im->pixels.height = im->pixels.width = 28;
  im->pixels.data.assign(size_t{3} * 28 * 28, value);
  im->digest.bytes[0] = digest;
  return im;
}

using Result = absl::StatusOr<std::vector<vision::ImageEmbedding>>;

// Submits a job for `images`; the future holds what `done` got.
std::future<Result> Submit(ImageEncoderWorker& worker,
                           const std::vector<const vision::PreparedImage*>& images) {
  auto promise = std::make_shared<std::promise<Result>>();
  std::future<Result> f = promise->get_future();
  ImageEncoderWorker::Job job;
  job.images = images;
  job.cancelled = [] { return false; };
  job.done = [promise](Result r) { promise->set_value(std::move(r)); };
  worker.Submit(std::move(job));
  return f;
}

void ExpectEmbeddings(Result r, const std::vector<float>& values) {
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    const vision::ImageEmbedding& e = (*r)[i];
    ASSERT_TRUE(e.data);
    EXPECT_EQ(e.data->size(), static_cast<size_t>(e.num_tokens) * e.hidden_size);
    EXPECT_EQ(e.data->at(0), values[i]);
  }
}

class ImageEncoderFailureTest : public ::testing::TestWithParam<FakeEncoder::Mode> {};

TEST_P(ImageEncoderFailureTest, FailsOnlyTheJobWithTheFailingImage) {
  std::promise<void> open_gate;
  auto encoder = std::make_unique<FakeEncoder>(GetParam(), open_gate.get_future().share());
  FakeEncoder* fake = encoder.get();
  vision::EncoderCache cache(1 << 20);
  Metrics metrics;
  ImageEncoderWorker worker(std::move(encoder), &cache, &metrics);

  auto gate = Image(kGate, 1), good = Image(1.0f, 2), bad = Image(kPoison, 3), other = Image(2, 4);
  // The gate job holds the encoder while the next three queue up: they form one batch.
  auto f_gate = Submit(worker, {gate.get()});
  while (fake->batch_sizes().empty()) std::this_thread::yield();  // the encoder holds the gate
  auto f_a = Submit(worker, {good.get()});
  auto f_b = Submit(worker, {good.get(), bad.get()});  // a good image beside the bad one
  auto f_c = Submit(worker, {other.get(), good.get()});
  open_gate.set_value();
  ExpectEmbeddings(f_gate.get(), {kGate});
  ExpectEmbeddings(f_a.get(), {1.0f});
  ExpectEmbeddings(f_c.get(), {2.0f, 1.0f});
  const Result b = f_b.get();
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInternal) << b.status();
  EXPECT_NE(b.status().message().find("image encoder failed"), std::string::npos) << b.status();
  EXPECT_NE(b.status().message().find("injected"), std::string::npos) << b.status();
  // One batch of the three jobs' 3 distinct images failed; each job was then encoded alone.
  const std::vector<int> sizes = fake->batch_sizes();
  ASSERT_GE(sizes.size(), 2u);
  EXPECT_EQ(sizes[0], 1);
  EXPECT_EQ(sizes[1], 3);

  // The worker thread is alive and serves on; the good images are cached.
  auto later = Image(3.0f, 5);
  ExpectEmbeddings(Submit(worker, {later.get()}).get(), {3.0f});
  EXPECT_TRUE(cache.Lookup(good->digest).has_value());
  EXPECT_FALSE(cache.Lookup(bad->digest).has_value());
  // The bad image alone fails again, cleanly.
  EXPECT_EQ(Submit(worker, {bad.get()}).get().status().code(), absl::StatusCode::kInternal);
}

INSTANTIATE_TEST_SUITE_P(Modes, ImageEncoderFailureTest,
                         ::testing::Values(FakeEncoder::Mode::kError, FakeEncoder::Mode::kThrow),
                         [](const ::testing::TestParamInfo<FakeEncoder::Mode>& info) {
                           return info.param == FakeEncoder::Mode::kError ? "Error" : "Throw";
                         });

}  // namespace
}  // namespace muse::server
