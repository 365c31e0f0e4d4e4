// Test-only: a ModelRunner that wraps a real one and, on the steps a test picks, fails them: the
// step's Forward / ForwardAndSample returns an error status or throws, before or after the real
// runner has done its work (so the KV of the failed step may be half written, as after a device
// fault). Never linked into production code (issue #15, "fault injection in the runner").
//
// Steps are numbered from 0 over every Forward / ForwardAndSample call. A test either lists steps
// (FailStep) or installs a policy that looks at the batch (e.g. "the first step that mixes a
// prefill chunk with decodes"). Configuring is thread-safe: a test may arm a fault while the
// engine thread runs.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "models/batch.h"
#include "src/runtime/model_runner.h"

namespace muse::testing {

class FaultInjectingRunner final : public runtime::ModelRunner {
 public:
  enum class Kind { kNone, kError, kThrow };
  struct Fault {
    Kind kind = Kind::kNone;
    // kError: the status returned; OK = UnknownError("injected fault at step N").
    absl::Status status;
    // Run the real step first (K/V written, logits computed), then fail.
    bool after_forward = false;
  };
  // Decides the fault of step `step` from its batch; called on the engine thread.
  using Policy = std::function<Fault(int64_t step, const models::Batch& batch)>;

  explicit FaultInjectingRunner(std::unique_ptr<runtime::ModelRunner> inner)
      : inner_(std::move(inner)) {}

  void FailStep(int64_t step, Fault fault) {
    std::lock_guard lock(mu_);
    by_step_[step] = std::move(fault);
  }
  void SetPolicy(Policy policy) {
    std::lock_guard lock(mu_);
    policy_ = std::move(policy);
  }

  int64_t steps() const { return steps_.load(); }    // Forward calls so far
  int64_t faults() const { return faults_.load(); }  // of them failed here
  // The batches of the failed steps, in order (the test checks what they held).
  std::vector<models::Batch> failed_batches() const {
    std::lock_guard lock(mu_);
    return failed_batches_;
  }
  runtime::ModelRunner& inner() { return *inner_; }

  const models::ModelConfig& config() const override { return inner_->config(); }
  int64_t num_kv_blocks() const override { return inner_->num_kv_blocks(); }
  int64_t kv_block_bytes() const override { return inner_->kv_block_bytes(); }
  bool SamplesOnDevice() const override { return inner_->SamplesOnDevice(); }

  absl::Status Forward(const models::Batch& batch, models::Logits* out) override {
    return Run(batch, [&] { return inner_->Forward(batch, out); });
  }
  absl::Status ForwardAndSample(const models::Batch& batch, const models::SamplingInputs& sampling,
                                models::SampledTokens* out) override {
    return Run(batch, [&] { return inner_->ForwardAndSample(batch, sampling, out); });
  }

  // Batch helpers for policies.
  static int NumSequences(const models::Batch& b) {
    return static_cast<int>(b.query_start_loc.size()) - 1;
  }
  static int QueryLen(const models::Batch& b, int i) {
    return b.query_start_loc[i + 1] - b.query_start_loc[i];
  }
  // True when the step holds at least one chunk of > 1 token (a prefill) and one decode.
  static bool MixesPrefillAndDecode(const models::Batch& b) {
    bool prefill = false, decode = false;
    for (int i = 0; i < NumSequences(b); ++i) {
      (QueryLen(b, i) > 1 ? prefill : decode) = true;
    }
    return prefill && decode;
  }

 private:
  absl::Status Run(const models::Batch& batch, const std::function<absl::Status()>& forward) {
    const int64_t step = steps_.fetch_add(1);
    Fault fault;
    {
      std::lock_guard lock(mu_);
      if (auto it = by_step_.find(step); it != by_step_.end()) {
        fault = it->second;
      } else if (policy_) {
        fault = policy_(step, batch);
      }
      if (fault.kind != Kind::kNone) failed_batches_.push_back(batch);
    }
    if (fault.kind == Kind::kNone) return forward();
    faults_.fetch_add(1);
    if (fault.after_forward) (void)forward();
    const std::string what = absl::StrCat("injected fault at step ", step);
    if (fault.kind == Kind::kThrow) throw std::runtime_error(what);
    return fault.status.ok() ? absl::UnknownError(what) : fault.status;
  }

  std::unique_ptr<runtime::ModelRunner> inner_;
  mutable std::mutex mu_;
  std::map<int64_t, Fault> by_step_;           // guarded by mu_
  Policy policy_;                              // guarded by mu_
  std::vector<models::Batch> failed_batches_;  // guarded by mu_
  std::atomic<int64_t> steps_{0};
  std::atomic<int64_t> faults_{0};
};

}  // namespace muse::testing
