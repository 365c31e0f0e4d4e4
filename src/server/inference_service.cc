#include "src/server/inference_service.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace muse::server {
namespace {

grpc::ServerUnaryReactor* Done(ServiceContext* ctx, grpc::CallbackServerContext* sctx,
                               const char* method, const absl::Status& st) {
  ctx->metrics.RecordRequest(method, absl::StatusCodeToString(st.code()));
  auto* r = sctx->DefaultReactor();
  r->Finish(ToGrpc(st));
  return r;
}

void FillInfo(const ServedModel& m, v1::ModelInfoResponse* out) {
  out->set_id(m.id);
  out->set_architecture(m.config.architecture);
  out->set_context_length(m.max_model_len);
  out->set_vocab_size(m.config.vocab_size);
  out->set_supports_images(m.supports_images);
  out->set_has_chat_template(m.chat_template.has_value());
  out->set_num_layers(m.config.num_hidden_layers);
  out->set_hidden_size(m.config.hidden_size);
  out->set_kv_blocks_total(m.kv_blocks_total);
  if (m.vision) {
    out->set_image_token_id(m.vision->image_token_id);
    out->set_image_token(m.vision->image_token);
    out->set_num_image_tokens(m.vision->num_image_tokens);
  }
  if (m.audio) {
    out->set_supports_audio(true);
    out->set_audio_token_id(m.audio->audio_token_id);
    out->set_audio_token(m.audio->audio_token);
  }
}

absl::Status DoTokenize(ServiceContext* ctx, grpc::CallbackServerContext* sctx,
                        const grpc::ByteBuffer& in, grpc::ByteBuffer* out) {
  RETURN_IF_ERROR(CheckAccess(*ctx, *sctx).status());
  v1::TokenizeRequest req;
  RETURN_IF_ERROR(ParseMessage(in, &req));
  ASSIGN_OR_RETURN(v1::TokenizeResponse resp, Tokenize(*ctx, req));
  *out = SerializeMessage(resp);
  return absl::OkStatus();
}

}  // namespace

grpc::ServerWriteReactor<grpc::ByteBuffer>* InferenceService::Generate(
    grpc::CallbackServerContext* sctx, const grpc::ByteBuffer* request) {
  return StartGenerateStream(ctx_, sctx, *request);
}

grpc::ServerUnaryReactor* InferenceService::GenerateUnary(grpc::CallbackServerContext* sctx,
                                                          const grpc::ByteBuffer* request,
                                                          grpc::ByteBuffer* response) {
  return StartGenerateUnary(ctx_, sctx, *request, response);
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(grpc::CallbackServerContext* sctx,
                                                     const grpc::ByteBuffer* request,
                                                     grpc::ByteBuffer* response) {
  return Done(ctx_, sctx, "Tokenize", DoTokenize(ctx_, sctx, *request, response));
}

grpc::ServerUnaryReactor* InferenceService::ListModels(grpc::CallbackServerContext* sctx,
                                                       const v1::ListModelsRequest*,
                                                       v1::ListModelsResponse* response) {
  absl::Status st = CheckAccess(*ctx_, *sctx).status();
  if (st.ok()) FillInfo(*ctx_->model, response->add_models());
  return Done(ctx_, sctx, "ListModels", st);
}

grpc::ServerUnaryReactor* InferenceService::ModelInfo(grpc::CallbackServerContext* sctx,
                                                      const v1::ModelInfoRequest* request,
                                                      v1::ModelInfoResponse* response) {
  absl::Status st = CheckAccess(*ctx_, *sctx).status();
  if (st.ok()) st = CheckModelName(request->model(), *ctx_->model);
  if (st.ok()) FillInfo(*ctx_->model, response);
  return Done(ctx_, sctx, "ModelInfo", st);
}

}  // namespace muse::server
