// The protocol-neutral core both faces (gRPC: inference_service / generate_reactors; HTTP:
// openai_*) share: the engine, the served model, auth, limits, metrics, the serving flags the
// health checks mirror, and admission (auth -> build -> priority -> tenant limits -> encoder
// cache -> Engine::AddRequest). Owned by Server; handlers hold a pointer. No gRPC in here: the
// request model is the plain `v1::GenerateRequest` message, which each face fills from its wire.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "muse/v1/inference.pb.h"
#include "src/engine/engine.h"
#include "src/server/auth.h"
#include "src/server/compile_pool.h"
#include "src/server/image_encoder_worker.h"
#include "src/server/metrics.h"
#include "src/server/pump_pool.h"
#include "src/server/request_builder.h"
#include "src/server/served_model.h"

namespace muse::server {

struct ServiceContext {
  std::unique_ptr<engine::Engine> engine;  // set once, before ready
  // Threads that turn engine output into gRPC writes (pump_pool.h); started before the gRPC
  // server, stopped after it. The engine thread only raises signals into it.
  std::unique_ptr<PumpPool> pumps;
  std::unique_ptr<ServedModel> model;  // set once, before ready
  // Models with an image or audio tower only (set once, before ready): embeddings by image or
  // audio digest, and the one thread that runs the vision and audio towers.
  std::unique_ptr<vision::EncoderCache> encoder_cache;
  std::unique_ptr<ImageEncoderWorker> image_encoder;
  // gRPC face: compiles the response formats the grammar cache does not hold (compile_pool.h).
  // Started before the gRPC server; Drain stops it before the image encoder and the engine.
  std::unique_ptr<CompilePool> compiles;
  // Tests only: runs on the compile-pool thread right before a request's compile (after its
  // cancel check), so a test can hold requests "while they compile".
  std::function<void()> compile_hook_for_testing;
  std::optional<ApiKeys> keys;  // empty = --no-auth
  TenantLimiter limiter;
  Metrics metrics;
  std::atomic<bool> ready{false};          // model loaded and warmed up
  std::atomic<bool> draining{false};       // SIGTERM: new requests are UNAVAILABLE
  std::atomic<int64_t> in_flight{0};       // generations admitted and not yet done (both faces)
  std::atomic<int64_t> reactors_alive{0};  // Generate reactor objects not yet destroyed
  std::atomic<uint64_t> next_id{0};
  // --thinking-token-budget: requests that set none get it (BuildOptions).
  std::optional<int> default_thinking_token_budget;
};

// Ready / draining / auth checks shared by every request of either face. `authorization` is the
// raw "Bearer <key>" value (gRPC metadata or HTTP header), nullopt when absent. Returns the
// tenant (a built-in "anonymous" one under --no-auth).
absl::StatusOr<const Tenant*> CheckAccess(ServiceContext& ctx,
                                          std::optional<std::string> authorization);

// Everything between a GenerateRequest and a live engine stream: build (images decoded +
// preprocessed), priority, tenant limits, encoder-cache lookups, and -- unless the response format
// still needs compiling (AdmitOptions::build.defer_compile) or images still need the encoder --
// Launch.
struct Admission {
  v1::GenerateRequest request;
  BuiltRequest built;
  const Tenant* tenant = nullptr;
  std::string engine_id;            // unique server-side id
  std::string client_id;            // echoed back (engine id when the client gave none)
  std::vector<int32_t> prompt_ids;  // kept only when the server decodes text itself
  // One per built.images entry, then one per built.audios entry: set on an encoder-cache hit, else
  // filled by the encoder worker.
  std::vector<std::optional<vision::ImageEmbedding>> embeddings;
  std::shared_ptr<engine::OutputStream> stream;  // null until launched

  // The response format is still to compile (CompilePending) before the request can launch.
  bool NeedsCompile() const { return built.to_compile.has_value(); }
  bool NeedsEncoding() const {
    for (const auto& e : embeddings) {
      if (!e) return true;
    }
    return false;
  }
  // The images / audio clips the encoder still has to run (cache misses), in order.
  std::vector<const vision::PreparedImage*> ImagesToEncode() const;
  std::vector<const PreparedAudio*> AudiosToEncode() const;
  // Fills the missing embeddings with `encoded` (ImagesToEncode, then AudiosToEncode order: what
  // the encoder worker's job returns).
  void SetEncoded(std::vector<vision::ImageEmbedding> encoded);
};

struct AdmitOptions {
  std::optional<absl::Time> deadline;  // the engine finishes the request with `deadline` then
  BuildOptions build;
};

// `tenant` comes from CheckAccess. Errors are absl statuses whose InvalidArgument messages start
// with the proto field path (each face renames them to its own).
absl::StatusOr<std::unique_ptr<Admission>> Admit(ServiceContext& ctx, const Tenant* tenant,
                                                 v1::GenerateRequest request,
                                                 const AdmitOptions& options = {});
// NeedsCompile() admissions, on a compile-pool thread: compiles the response format through the
// grammar cache into the request (errors name the field, as inline ones). Then the caller sends
// the images to the encoder or Launches.
absl::Status CompilePending(ServiceContext& ctx, Admission& a);
// Expands the image and audio placeholders with the embeddings (Request::content carries their
// digests into the prefix-cache keys), then Engine::AddRequest. Sets `a.stream`.
absl::Status Launch(ServiceContext& ctx, Admission& a);

// A generation that reached the engine is over (any outcome): its usage / timings go to the
// metrics and its completion tokens to the tenant's bucket. Call once.
void RecordFinished(ServiceContext& ctx, const Admission& a, const engine::Usage& usage,
                    const engine::Timings& timings, const std::string& finish_reason);

// Prompt text or chat messages -> token ids as Generate would see them (both faces' Tokenize).
absl::StatusOr<v1::TokenizeResponse> Tokenize(ServiceContext& ctx, const v1::TokenizeRequest& req);
// Token ids -> text, special tokens kept; ids are range-checked ("tokens[i]: ...").
absl::StatusOr<std::string> Detokenize(ServiceContext& ctx, const std::string& model,
                                       const std::vector<int32_t>& ids);

}  // namespace muse::server
