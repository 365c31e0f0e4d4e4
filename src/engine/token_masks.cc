#include "src/engine/token_masks.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>

#include "kernels/cpu/thread_pool.h"

namespace muse::engine {

namespace {

bool AnyBit(std::span<const uint32_t> words) {
  return std::any_of(words.begin(), words.end(), [](uint32_t w) { return w != 0; });
}

// Clears the ids min_tokens masks (what the sampler masks without a bitmask) unless that would
// leave no token; returns whether any token is allowed.
bool FoldMinTokens(const TokenMaskJob& job, std::span<uint32_t> words) {
  const SamplingParams& p = *job.params;
  const int64_t limit = int64_t{job.num_words} * 32;
  std::vector<int64_t> ids;
  if (!p.ignore_eos && job.eos_token_ids != nullptr) ids = *job.eos_token_ids;
  ids.insert(ids.end(), p.stop_token_ids.begin(), p.stop_token_ids.end());
  std::vector<std::pair<int64_t, uint32_t>> saved;  // word index, its bits before clearing
  for (int64_t id : ids) {
    if (id < 0 || id >= limit) continue;
    uint32_t& w = words[id / 32];
    saved.emplace_back(id / 32, w);
    w &= ~(uint32_t{1} << (id % 32));
  }
  if (AnyBit(words)) return true;
  // Only the masked ids were allowed: the grammar wins over min_tokens.
  for (auto it = saved.rbegin(); it != saved.rend(); ++it) words[it->first] = it->second;
  return AnyBit(words);
}

}  // namespace

void ComputeTokenMask(TokenMaskJob& job) {
  try {
    std::span<uint32_t> words(job.words, static_cast<size_t>(job.num_words));
    bool any;
    if (job.forced_token >= 0) {
      std::fill(words.begin(), words.end(), uint32_t{0});
      const int64_t word = job.forced_token / 32;
      if (word < job.num_words) words[word] = uint32_t{1} << (job.forced_token % 32);
      any = AnyBit(words);
    } else {
      job.matcher->FillNextTokenBitmask(words);
      any = job.params != nullptr && job.generated < job.params->min_tokens
                ? FoldMinTokens(job, words)
                : AnyBit(words);
    }
    job.empty = !any;
    for (int c = 1; c < job.copies; ++c) {
      std::memcpy(job.words + static_cast<size_t>(c) * job.num_words, job.words,
                  sizeof(uint32_t) * job.num_words);
    }
  } catch (const std::exception& e) {
    job.error = e.what();
  } catch (...) {
    job.error = "unknown exception";
  }
}

TokenMaskWorker::TokenMaskWorker(kernels::cpu::ThreadPool* pool) : pool_(pool) {}

TokenMaskWorker::~TokenMaskWorker() {
  if (!thread_.joinable()) return;
  Wait();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void TokenMaskWorker::Start(std::span<TokenMaskJob> jobs) {
  if (jobs.empty()) return;
  if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_ = jobs;
    pending_ = true;
  }
  cv_.notify_all();
}

void TokenMaskWorker::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !pending_; });
}

void TokenMaskWorker::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return pending_ || stop_; });
    if (stop_) return;
    const std::span<TokenMaskJob> jobs = jobs_;
    lock.unlock();
    const absl::Time start = absl::Now();
    if (pool_ == nullptr || jobs.size() == 1) {
      for (TokenMaskJob& job : jobs) ComputeTokenMask(job);
    } else {
      std::atomic<size_t> next{0};
      pool_->Run([&](int) {
        for (size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < jobs.size();) {
          ComputeTokenMask(jobs[i]);
        }
      });
    }
    const absl::Duration took = absl::Now() - start;
    lock.lock();
    last_batch_time_ = took;
    pending_ = false;
    cv_.notify_all();
  }
}

}  // namespace muse::engine
