// muse.v1.Inference on gRPC's callback API. Generate, GenerateUnary and Tokenize take raw bytes
// so that invalid UTF-8 is reported as INVALID_ARGUMENT naming the field (the stock proto3
// deserializer answers INTERNAL); ListModels and ModelInfo are typed.
#pragma once

#include <grpcpp/grpcpp.h>

#include "muse/v1/inference.grpc.pb.h"
#include "src/server/chat_request.h"
#include "src/server/service_context.h"

namespace muse::server {

using InferenceBase = v1::Inference::WithRawCallbackMethod_Generate<
    v1::Inference::WithRawCallbackMethod_GenerateUnary<
        v1::Inference::WithRawCallbackMethod_Tokenize<v1::Inference::WithCallbackMethod_ListModels<
            v1::Inference::WithCallbackMethod_ModelInfo<v1::Inference::Service>>>>>;

class InferenceService final : public InferenceBase {
 public:
  explicit InferenceService(ServiceContext* ctx) : ctx_(ctx) {}

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* sctx,
                                                       const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* GenerateUnary(grpc::CallbackServerContext* sctx,
                                          const grpc::ByteBuffer* request,
                                          grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* sctx,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* sctx,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* ModelInfo(grpc::CallbackServerContext* sctx,
                                      const v1::ModelInfoRequest* request,
                                      v1::ModelInfoResponse* response) override;

 private:
  ServiceContext* ctx_;
};

inline grpc::Status ToGrpc(const absl::Status& s) {
  // absl and gRPC share the canonical code numbering.
  return s.ok() ? grpc::Status::OK
                : grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

// grpc_request.cc. Parses `buf` into `msg`. Unlike the stock deserializer (which answers
// INTERNAL), invalid UTF-8 in a string field is INVALID_ARGUMENT naming the field, e.g.
// "messages[0].content[1].text".
// A call that ended before its request message arrived (cancel, disconnect, deadline: gRPC
// still runs the raw-method handler, with no buffer) is CANCELLED, not a malformed request.
absl::Status ParseMessage(const grpc::ByteBuffer& buf, google::protobuf::Message* msg);
// The status of a call the client ended -- a cancel, a disconnect, or its deadline, which gRPC
// reports the same way (OnCancel, or no request message): DEADLINE_EXCEEDED once `deadline` has
// passed, else CANCELLED.
absl::Status CallEndedStatus(std::chrono::system_clock::time_point deadline);
grpc::ByteBuffer SerializeMessage(const google::protobuf::Message& msg);
// The core's CheckAccess / Admit with the key from the `authorization` metadata and the call's
// deadline as the engine deadline. Tools and tool_choice go through ApplyToolChoice first
// (chat_request.h); `plan` receives how the output is parsed.
absl::StatusOr<const Tenant*> CheckAccess(ServiceContext& ctx,
                                          const grpc::CallbackServerContext& sctx);
absl::StatusOr<std::unique_ptr<Admission>> Admit(ServiceContext& ctx,
                                                 const grpc::CallbackServerContext& sctx,
                                                 const grpc::ByteBuffer& buf, ToolPlan* plan);

// Implemented in generate_reactors.cc.
grpc::ServerWriteReactor<grpc::ByteBuffer>* StartGenerateStream(ServiceContext* ctx,
                                                                grpc::CallbackServerContext* sctx,
                                                                const grpc::ByteBuffer& request);
grpc::ServerUnaryReactor* StartGenerateUnary(ServiceContext* ctx, grpc::CallbackServerContext* sctx,
                                             const grpc::ByteBuffer& request,
                                             grpc::ByteBuffer* response);

}  // namespace muse::server
