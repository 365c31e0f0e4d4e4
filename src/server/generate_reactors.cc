// Generate (server streaming) and GenerateUnary reactors: one lifecycle base, two behaviours.
//
// Threads: the engine pushes into the request's OutputStream (unbounded; the engine thread never
// blocks) and fires the stream's notify hook. The hook only raises the reactor's PumpPool signal
// (pump_pool.h): no gRPC, no protobuf on the engine thread. Pump() runs on a pump thread, or on a
// gRPC thread from OnWriteDone / OnCancel: it merges the queued outputs into protobuf and starts
// at most one write (Generate) or, at the end, the one response (GenerateUnary).
//
// Flow control (Generate): when no write is in flight Pump drains everything queued into ONE
// response and starts one write; OnWriteDone pumps again. So each stream has at most one write in
// flight, a slow reader only grows its own OutputStream, and no thread ever waits on a stream.
//
// Lifetime: the reactor (a shared_ptr) holds itself in self_ from Start until OnDone; a
// compile-pool or image-encoder job holds it while one is pending; a pump thread holds it only
// while its Pump() runs. The engine-side signal holds a weak_ptr, so a signal still queued when
// OnDone drops self_ is skipped, and the last reference is never dropped on the engine thread.
// Cancel / disconnect / deadline -> Engine::Abort (frees KV before the next step); the RPC ends
// DEADLINE_EXCEEDED when its deadline has passed, else CANCELLED.
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "src/common/logging.h"
#include "src/server/inference_service.h"
#include "src/server/output_accumulator.h"

namespace muse::server {
namespace {

class ErrorStream final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit ErrorStream(const grpc::Status& s) { Finish(s); }
  void OnDone() override { delete this; }
};

// The lifecycle both Generate reactors share: start (attach to the engine stream, or go through
// the compile pool and / or the image encoder first), the engine -> pump handoff, cancel, done,
// metrics. The derived class says what a pump does with the queued outputs (PumpLocked).
template <typename GrpcReactor>
class GenerateReactor : public GrpcReactor,
                        public Pumpable,
                        public std::enable_shared_from_this<GenerateReactor<GrpcReactor>> {
 public:
  // gRPC thread, once, right after make_shared (before the reactor is returned to gRPC). Whatever
  // admission left -- a response format to compile, images to encode -- goes to its worker; the
  // request launches from that worker's completion.
  void Start() {
    self_ = this->shared_from_this();
    if (a_->stream) {
      Attach();
      return;
    }
    if (a_->NeedsCompile()) {
      ctx_->compiles->Submit(
          [self = self_](absl::Status st) { self->OnCompileTurn(std::move(st)); });
      return;
    }
    SubmitImages();
  }

  void OnCancel() final {
    {
      std::lock_guard lock(mu_);
      cancelled_ = true;
    }
    MUSE_LOG_REQ(debug, a_->engine_id,
                 "{}: cancelled by the client (cancel, disconnect or deadline)", method_);
    // NotFound while still at the compile pool or the image encoder.
    (void)ctx_->engine->Abort(a_->engine_id);
    Pump();
  }

  void OnDone() final {
    ctx_->metrics.RecordRequest(method_, code_name_);
    ctx_->in_flight.fetch_sub(1);
    std::shared_ptr<GenerateReactor> self;
    {
      std::lock_guard lock(mu_);
      self.swap(self_);
    }
    // `self` going out of scope may destroy this object (a running Pump keeps its own ref).
  }

  // Pump or gRPC threads, never the engine thread (its hook only raises the signal).
  void Pump() final {
    std::unique_lock lock(mu_);
    if (finish_called_) return;
    PumpLocked(lock);
  }

 protected:
  GenerateReactor(ServiceContext* ctx, std::unique_ptr<Admission> a, ToolPlan plan,
                  const char* method, std::chrono::system_clock::time_point deadline)
      : ctx_(ctx),
        a_(std::move(a)),
        method_(method),
        deadline_(deadline),
        plan_(std::move(plan)),
        acc_(*ctx->model, *a_, plan_.keep_special) {
    if (plan_.parse) {  // call ids seeded from the request: deterministic per request
      parsers_.emplace(ctx->model->chat_formats, plan_, std::hash<std::string>{}(a_->engine_id));
    }
    ctx_->in_flight.fetch_add(1);
    ctx_->reactors_alive.fetch_add(1);
  }
  ~GenerateReactor() override { ctx_->reactors_alive.fetch_sub(1); }

  // mu_ held, the RPC not finished: act on what the stream holds. May release the lock.
  virtual void PumpLocked(std::unique_lock<std::mutex>& lock) = 0;

  // Marks the RPC finished with `st` (its code goes to the request metrics), records the
  // generation if it reached the engine, and releases mu_. The caller then ends the RPC.
  void EndLocked(std::unique_lock<std::mutex>& lock, const absl::Status& st) {
    finish_called_ = true;
    code_name_ = absl::StatusCodeToString(st.code());
    if (a_->stream) RecordFinished(*ctx_, *a_, acc_.usage(), acc_.timings(), acc_.last_reason());
    lock.unlock();
  }
  void FinishLocked(std::unique_lock<std::mutex>& lock, const absl::Status& st) {
    EndLocked(lock, st);
    this->Finish(ToGrpc(st));
  }

  ServiceContext* const ctx_;
  const std::unique_ptr<Admission> a_;
  const char* const method_;  // "Generate" / "GenerateUnary", for metrics and logs
  // The call's deadline: a cancel after it is DEADLINE_EXCEEDED (gRPC's deadline fires OnCancel).
  const std::chrono::system_clock::time_point deadline_;
  const ToolPlan plan_;  // tools / reasoning: how the text is split (chat_request.h)
  std::mutex mu_;
  OutputAccumulator acc_;                     // guarded by mu_
  std::optional<SampleChatParsers> parsers_;  // guarded by mu_; set when plan_.parse
  bool cancelled_ = false;  // guarded by mu_: client cancel / disconnect / deadline / failed write

 private:
  bool IsCancelled() {
    std::lock_guard lock(mu_);
    return cancelled_ || finish_called_;
  }

  // mu_ not held: the images the encoder cache did not have go to the encoder thread.
  void SubmitImages() {
    ImageEncoderWorker::Job job;
    job.images = a_->ImagesToEncode();
    job.audios = a_->AudiosToEncode();
    job.cancelled = [this] { return IsCancelled(); };  // `done` below keeps `this` alive
    job.done =
        [self = this->shared_from_this()](absl::StatusOr<std::vector<vision::ImageEmbedding>> r) {
          self->OnImagesEncoded(std::move(r));
        };
    ctx_->image_encoder->Submit(std::move(job));
  }

  // Compile-pool thread (or the pool's Stop, with Unavailable): this request's turn to compile
  // its response format. A request cancelled before or during the compile never launches (the
  // compiled grammar stays in the cache for the next request that asks for it).
  void OnCompileTurn(absl::Status st) {
    if (IsCancelled()) return;  // OnCancel's Pump finishes; nothing reached the engine
    // No lock while compiling: until it launches, only this job touches the request.
    if (st.ok()) {
      if (ctx_->compile_hook_for_testing) ctx_->compile_hook_for_testing();
      st = RenameToolChoiceError(CompilePending(*ctx_, *a_), plan_);
    }
    std::unique_lock lock(mu_);
    if (finish_called_ || cancelled_) return;
    if (st.ok() && a_->NeedsEncoding()) {
      lock.unlock();
      SubmitImages();
      return;
    }
    if (st.ok()) st = Launch(*ctx_, *a_);  // under mu_, as in OnImagesEncoded
    if (!st.ok()) {
      FinishLocked(lock, st);
      return;
    }
    lock.unlock();
    Attach();
  }

  // Image-encoder worker thread: the missing embeddings are ready (or failed / cancelled).
  void OnImagesEncoded(absl::StatusOr<std::vector<vision::ImageEmbedding>> encoded) {
    std::unique_lock lock(mu_);
    if (finish_called_ || cancelled_)
      return;  // OnCancel's Pump finishes; nothing reached the engine
    absl::Status st = encoded.status();
    if (st.ok()) {
      a_->SetEncoded(std::move(*encoded));
      st = Launch(*ctx_, *a_);  // under mu_: a concurrent OnCancel then finds the request to Abort
    }
    if (!st.ok()) {
      FinishLocked(lock, st);
      return;
    }
    lock.unlock();
    Attach();
  }

  // From here on every engine push raises this reactor's signal. weak_from_this, not self_:
  // OnDone may be clearing self_ concurrently.
  void Attach() {
    std::shared_ptr<PumpPool::Signal> signal = ctx_->pumps->NewSignal(this->weak_from_this());
    a_->stream->SetNotify([signal] { signal->Raise(); });
  }

  bool finish_called_ = false;             // guarded by mu_
  std::string code_name_ = "UNKNOWN";      // written before Finish, read in OnDone
  std::shared_ptr<GenerateReactor> self_;  // guarded by mu_
};

class GenerateStream final : public GenerateReactor<grpc::ServerWriteReactor<grpc::ByteBuffer>> {
 public:
  GenerateStream(ServiceContext* ctx, std::unique_ptr<Admission> a, ToolPlan plan,
                 std::chrono::system_clock::time_point deadline)
      : GenerateReactor(ctx, std::move(a), std::move(plan), "Generate", deadline) {}

  void OnWriteDone(bool ok) override {
    {
      std::lock_guard lock(mu_);
      write_in_flight_ = false;
      if (!ok) cancelled_ = true;  // the client went away
    }
    if (!ok) (void)ctx_->engine->Abort(a_->engine_id);
    Pump();
  }

 private:
  void PumpLocked(std::unique_lock<std::mutex>& lock) override {
    if (write_in_flight_) return;  // OnWriteDone pumps again
    if (cancelled_) {
      FinishLocked(lock, CallEndedStatus(deadline_));
      return;
    }
    if (!a_->stream) return;  // still at the compile pool or the image encoder
    std::map<int, v1::SampleDelta> samples;
    bool final = false, any = false;
    while (auto out = a_->stream->TryNext()) {
      any = true;
      if (acc_.Add(*out, &samples)) {
        final = true;
        break;
      }
    }
    if (!any) return;
    if (parsers_) parsers_->Apply(&samples);
    v1::GenerateResponse resp;
    resp.set_request_id(a_->client_id);
    for (auto& [i, s] : samples) *resp.add_samples() = std::move(s);
    if (!final) {
      write_in_flight_ = true;
      out_ = SerializeMessage(resp);
      lock.unlock();
      StartWrite(&out_);
      return;
    }
    const absl::Status st = FinalStatus(acc_, false);
    resp.set_finished(true);
    acc_.FillUsage(resp.mutable_usage(), resp.mutable_timings());
    out_ = SerializeMessage(resp);
    EndLocked(lock, st);
    if (st.ok()) {
      StartWriteAndFinish(&out_, grpc::WriteOptions(), grpc::Status::OK);
    } else {
      Finish(ToGrpc(st));
    }
  }

  bool write_in_flight_ = false;  // guarded by mu_
  grpc::ByteBuffer out_;          // the write in flight
};

class GenerateUnaryReactor final : public GenerateReactor<grpc::ServerUnaryReactor> {
 public:
  GenerateUnaryReactor(ServiceContext* ctx, std::unique_ptr<Admission> a, ToolPlan plan,
                       grpc::ByteBuffer* response, std::chrono::system_clock::time_point deadline)
      : GenerateReactor(ctx, std::move(a), std::move(plan), "GenerateUnary", deadline),
        response_(response) {}

 private:
  // Collects until the final message (or a cancel), then answers once.
  void PumpLocked(std::unique_lock<std::mutex>& lock) override {
    bool final = false;
    while (a_->stream) {
      auto out = a_->stream->TryNext();
      if (!out) break;
      if (acc_.Add(*out, &samples_)) {
        final = true;
        break;
      }
    }
    if (!final && !cancelled_) return;
    const absl::Status st =
        cancelled_ && !final ? CallEndedStatus(deadline_) : FinalStatus(acc_, false);
    if (st.ok()) {
      v1::GenerateUnaryResponse resp;
      resp.set_request_id(a_->client_id);
      for (auto& [i, s] : samples_) {
        v1::Completion* c = resp.add_completions();
        c->set_index(s.index());
        *c->mutable_token_ids() = std::move(*s.mutable_token_ids());
        c->set_text(std::move(*s.mutable_text()));
        *c->mutable_logprobs() = std::move(*s.mutable_logprobs());
        c->set_finish_reason(s.finish_reason());
        c->set_stop_reason(s.stop_reason());
        if (parsers_) parsers_->ApplyWhole(c);
      }
      acc_.FillUsage(resp.mutable_usage(), resp.mutable_timings());
      *response_ = SerializeMessage(resp);
    }
    FinishLocked(lock, st);
  }

  std::map<int, v1::SampleDelta> samples_;  // guarded by mu_
  grpc::ByteBuffer* const response_;
};

}  // namespace

grpc::ServerWriteReactor<grpc::ByteBuffer>* StartGenerateStream(ServiceContext* ctx,
                                                                grpc::CallbackServerContext* sctx,
                                                                const grpc::ByteBuffer& request) {
  ToolPlan plan;
  auto a = Admit(*ctx, *sctx, request, &plan);
  if (!a.ok()) {
    ctx->metrics.RecordRequest("Generate", absl::StatusCodeToString(a.status().code()));
    return new ErrorStream(ToGrpc(a.status()));
  }
  auto r = std::make_shared<GenerateStream>(ctx, std::move(*a), std::move(plan), sctx->deadline());
  r->Start();
  return r.get();  // kept alive by its self_ reference until OnDone
}

grpc::ServerUnaryReactor* StartGenerateUnary(ServiceContext* ctx, grpc::CallbackServerContext* sctx,
                                             const grpc::ByteBuffer& request,
                                             grpc::ByteBuffer* response) {
  ToolPlan plan;
  auto a = Admit(*ctx, *sctx, request, &plan);
  if (!a.ok()) {
    ctx->metrics.RecordRequest("GenerateUnary", absl::StatusCodeToString(a.status().code()));
    auto* r = sctx->DefaultReactor();
    r->Finish(ToGrpc(a.status()));
    return r;
  }
  auto r = std::make_shared<GenerateUnaryReactor>(ctx, std::move(*a), std::move(plan), response,
                                                  sctx->deadline());
  r->Start();
  return r.get();
}

}  // namespace muse::server
