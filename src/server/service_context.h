// State shared by the gRPC handlers: the engine, the served model, auth, limits, metrics, and the
// serving flags the health service mirrors. Owned by Server; handlers hold a pointer.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <grpcpp/grpcpp.h>

#include "muse/v1/inference.pb.h"
#include "src/engine/engine.h"
#include "src/server/auth.h"
#include "src/server/metrics.h"
#include "src/server/request_builder.h"
#include "src/server/served_model.h"

namespace muse::server {

struct ServiceContext {
  std::unique_ptr<engine::Engine> engine;  // set once, before ready
  std::unique_ptr<ServedModel> model;      // set once, before ready
  std::optional<ApiKeys> keys;             // empty = --no-auth
  TenantLimiter limiter;
  Metrics metrics;
  std::atomic<bool> ready{false};     // model loaded and warmed up
  std::atomic<bool> draining{false};  // SIGTERM: new requests are UNAVAILABLE
  std::atomic<int64_t> in_flight{0};  // generations admitted and not yet done
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
absl::StatusOr<const Tenant*> CheckAccess(ServiceContext& ctx, const grpc::CallbackServerContext& sctx);

// Everything between the bytes of a GenerateRequest and a live engine stream: parse, build,
// priority, tenant limits, AddRequest.
struct Admission {
  v1::GenerateRequest request;
  BuiltRequest built;
  const Tenant* tenant = nullptr;
  std::string engine_id;  // unique server-side id
  std::string client_id;  // echoed back (engine id when the client gave none)
  std::vector<int32_t> prompt_ids;  // kept only when the server decodes text itself
  std::shared_ptr<engine::OutputStream> stream;
};
absl::StatusOr<std::unique_ptr<Admission>> Admit(ServiceContext& ctx,
                                                 const grpc::CallbackServerContext& sctx,
                                                 const grpc::ByteBuffer& buf);

}  // namespace muse::server
