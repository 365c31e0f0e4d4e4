// State shared by the gRPC handlers: the engine, the served model, auth, limits, metrics, and the
// serving flags the health service mirrors. Owned by Server; handlers hold a pointer.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "muse/v1/inference.pb.h"
#include "src/engine/engine.h"
#include "src/server/auth.h"
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
  // LLaVA models only (set once, before ready): embeddings by image digest, and the one thread
  // that runs the vision tower.
  std::unique_ptr<vision::EncoderCache> encoder_cache;
  std::unique_ptr<ImageEncoderWorker> image_encoder;
  std::optional<ApiKeys> keys;  // empty = --no-auth
  TenantLimiter limiter;
  Metrics metrics;
  std::atomic<bool> ready{false};          // model loaded and warmed up
  std::atomic<bool> draining{false};       // SIGTERM: new requests are UNAVAILABLE
  std::atomic<int64_t> in_flight{0};       // generations admitted and not yet done
  std::atomic<int64_t> reactors_alive{0};  // Generate reactor objects not yet destroyed
  std::atomic<uint64_t> next_id{0};
};

inline grpc::Status ToGrpc(const absl::Status& s) {
  // absl and gRPC share the canonical code numbering.
  return s.ok() ? grpc::Status::OK
                : grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

// Parses `buf` into `msg`. Unlike the stock deserializer (which answers INTERNAL), invalid UTF-8
// in a string field is INVALID_ARGUMENT naming the field, e.g. "messages[0].content[1].text".
absl::Status ParseMessage(const grpc::ByteBuffer& buf, google::protobuf::Message* msg);
grpc::ByteBuffer SerializeMessage(const google::protobuf::Message& msg);

// Ready / draining / auth checks shared by every RPC. Returns the tenant (a built-in
// "anonymous" one under --no-auth).
absl::StatusOr<const Tenant*> CheckAccess(ServiceContext& ctx,
                                          const grpc::CallbackServerContext& sctx);

// Everything between the bytes of a GenerateRequest and a live engine stream: parse, build
// (images decoded + preprocessed), priority, tenant limits, encoder-cache lookups, and -- unless
// images still need the encoder -- Launch.
struct Admission {
  v1::GenerateRequest request;
  BuiltRequest built;
  const Tenant* tenant = nullptr;
  std::string engine_id;            // unique server-side id
  std::string client_id;            // echoed back (engine id when the client gave none)
  std::vector<int32_t> prompt_ids;  // kept only when the server decodes text itself
  // One per built.images entry: set on an encoder-cache hit, else filled by the encoder worker.
  std::vector<std::optional<vision::ImageEmbedding>> embeddings;
  std::shared_ptr<engine::OutputStream> stream;  // null until launched

  bool NeedsEncoding() const {
    for (const auto& e : embeddings) {
      if (!e) return true;
    }
    return false;
  }
  // The images the encoder still has to run (cache misses), in order.
  std::vector<const vision::PreparedImage*> ImagesToEncode() const;
  // Fills the missing embeddings with `encoded` (ImagesToEncode order).
  void SetEncoded(std::vector<vision::ImageEmbedding> encoded);
};
absl::StatusOr<std::unique_ptr<Admission>> Admit(ServiceContext& ctx,
                                                 const grpc::CallbackServerContext& sctx,
                                                 const grpc::ByteBuffer& buf);
// Expands the image placeholders with the embeddings (Request::content carries their digests
// into the prefix-cache keys), then Engine::AddRequest. Sets `a.stream`.
absl::Status Launch(ServiceContext& ctx, Admission& a);

}  // namespace muse::server
