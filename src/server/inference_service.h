// muse.v1.Inference on gRPC's callback API. Generate, GenerateUnary and Tokenize take raw bytes
// so that invalid UTF-8 is reported as INVALID_ARGUMENT naming the field (the stock proto3
// deserializer answers INTERNAL); ListModels and ModelInfo are typed.
#pragma once

#include <grpcpp/grpcpp.h>

#include "muse/v1/inference.grpc.pb.h"
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

// Implemented in generate_reactors.cc.
grpc::ServerWriteReactor<grpc::ByteBuffer>* StartGenerateStream(ServiceContext* ctx,
                                                                grpc::CallbackServerContext* sctx,
                                                                const grpc::ByteBuffer& request);
grpc::ServerUnaryReactor* StartGenerateUnary(ServiceContext* ctx, grpc::CallbackServerContext* sctx,
                                             const grpc::ByteBuffer& request,
                                             grpc::ByteBuffer* response);

}  // namespace muse::server
