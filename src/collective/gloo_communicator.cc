#include "src/collective/gloo_communicator.h"

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/transport/tcp/device.h>

#include <chrono>
#include <exception>
#include <filesystem>
#include <functional>
#include <system_error>

#include "absl/strings/str_cat.h"

namespace muse::collective {
namespace {

class GlooCommunicator final : public Communicator {
 public:
  GlooCommunicator(std::shared_ptr<gloo::Context> context, std::chrono::milliseconds timeout)
      : context_(std::move(context)), timeout_(timeout) {}

  int rank() const override { return context_->rank; }
  int size() const override { return context_->size; }

  absl::Status AllReduceSum(float* data, int64_t count) override {
    if (context_->size == 1 || count == 0) return Check("all-reduce");
    return Run("all-reduce", [&] {
      gloo::AllreduceOptions o(context_);
      o.setOutput(data, static_cast<size_t>(count));
      o.setReduceFunction(
          static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
      o.setTimeout(timeout_);
      gloo::allreduce(o);
    });
  }

  absl::Status AllGather(const float* in, int64_t count, float* out) override {
    if (context_->size == 1 || count == 0) {
      if (count > 0) std::copy(in, in + count, out);
      return Check("all-gather");
    }
    return Run("all-gather", [&] {
      gloo::AllgatherOptions o(context_);
      o.setInput(const_cast<float*>(in), static_cast<size_t>(count));
      o.setOutput(out, static_cast<size_t>(count) * context_->size);
      o.setTimeout(timeout_);
      gloo::allgather(o);
    });
  }

  absl::Status Broadcast(void* data, int64_t bytes, int root) override {
    if (root < 0 || root >= context_->size) {
      return absl::InvalidArgumentError(
          absl::StrCat("broadcast root ", root, " is not a rank of ", context_->size));
    }
    if (context_->size == 1 || bytes == 0) return Check("broadcast");
    return Run("broadcast", [&] {
      gloo::BroadcastOptions o(context_);
      o.setOutput(static_cast<uint8_t*>(data), static_cast<size_t>(bytes));
      o.setRoot(root);
      o.setTimeout(timeout_);
      gloo::broadcast(o);
    });
  }

  absl::Status Barrier() override {
    if (context_->size == 1) return Check("barrier");
    return Run("barrier", [&] {
      gloo::BarrierOptions o(context_);
      o.setTimeout(timeout_);
      gloo::barrier(o);
    });
  }

 private:
  absl::Status Check(const char*) const { return broken_; }

  // Gloo reports a dead or hung peer by throwing (gloo::IoException, or EnforceNotMet when the
  // sizes disagree); after that the pairs are in an unknown state, so the communicator stays
  // failed.
  absl::Status Run(const char* op, const std::function<void()>& fn) {
    RETURN_IF_ERROR(broken_);
    try {
      fn();
      return absl::OkStatus();
    } catch (const std::exception& e) {
      broken_ = absl::UnavailableError(
          absl::StrCat("tensor-parallel ", op, " failed on rank ", context_->rank, " of ",
                       context_->size, " (a peer died, hung or disagreed): ", e.what()));
      return broken_;
    }
  }

  std::shared_ptr<gloo::Context> context_;
  std::chrono::milliseconds timeout_;
  absl::Status broken_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> ConnectGloo(const GlooOptions& options) {
  if (options.size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("size must be >= 1, got ", options.size));
  }
  if (options.rank < 0 || options.rank >= options.size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank must be in [0, ", options.size, "), got ", options.rank));
  }
  if (options.store_dir.empty() && options.size > 1) {
    return absl::InvalidArgumentError("store_dir is empty");
  }
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("timeout must be positive");
  }
  const auto timeout = std::chrono::milliseconds(absl::ToInt64Milliseconds(options.timeout));
  try {
    auto context = std::make_shared<gloo::rendezvous::Context>(options.rank, options.size);
    context->setTimeout(timeout);
    if (options.size > 1) {
      std::error_code ec;
      std::filesystem::create_directories(options.store_dir, ec);
      if (ec) {
        return absl::InvalidArgumentError(
            absl::StrCat("store_dir ", options.store_dir, ": ", ec.message()));
      }
      gloo::transport::tcp::attr attr(options.hostname.c_str());
      std::shared_ptr<gloo::transport::Device> device = gloo::transport::tcp::CreateDevice(attr);
      gloo::rendezvous::FileStore file_store(options.store_dir);
      gloo::rendezvous::PrefixStore store(options.prefix, file_store);
      context->connectFullMesh(store, device);
    }
    return std::unique_ptr<Communicator>(new GlooCommunicator(std::move(context), timeout));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("tensor-parallel rank ", options.rank, " of ",
                                               options.size, " could not connect: ", e.what()));
  }
}

}  // namespace muse::collective
