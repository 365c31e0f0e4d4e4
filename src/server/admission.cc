// Request admission shared by Generate and GenerateUnary (see service_context.h).
#include <google/protobuf/descriptor.h>
#include <google/protobuf/unknown_field_set.h>

#include <chrono>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "src/common/logging.h"
#include "src/server/image_prompt.h"
#include "src/server/service_context.h"
#include "src/tokenizer/utf8.h"

namespace muse::server {
namespace {

// Walks the wire format (no UTF-8 checks there) with the descriptor to name the bad field.
std::optional<std::string> FindInvalidUtf8(const google::protobuf::Descriptor* d,
                                           const google::protobuf::UnknownFieldSet& fields,
                                           const std::string& prefix) {
  std::map<int, int> seen;  // field number -> occurrences so far (repeated index)
  for (int i = 0; i < fields.field_count(); ++i) {
    const auto& f = fields.field(i);
    if (f.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) continue;
    const google::protobuf::FieldDescriptor* fd = d->FindFieldByNumber(f.number());
    if (fd == nullptr) continue;
    const int index = seen[f.number()]++;
    std::string name = prefix + fd->name();
    if (fd->is_repeated() && !fd->is_map()) absl::StrAppend(&name, "[", index, "]");
    if (fd->type() == google::protobuf::FieldDescriptor::TYPE_STRING) {
      if (!tokenizer::IsValidUtf8(f.length_delimited())) return name;
    } else if (fd->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE && !fd->is_map()) {
      google::protobuf::UnknownFieldSet sub;
      if (sub.ParseFromString(f.length_delimited())) {
        if (auto r = FindInvalidUtf8(fd->message_type(), sub, name + ".")) return r;
      }
    }
  }
  return std::nullopt;
}

const Tenant& Anonymous() {
  static const Tenant t{.name = "anonymous", .max_priority = engine::Priority::kInteractive};
  return t;
}

}  // namespace

absl::Status ParseMessage(const grpc::ByteBuffer& buf, google::protobuf::Message* msg) {
  std::vector<grpc::Slice> slices;
  if (!buf.Dump(&slices).ok()) return absl::InvalidArgumentError("request: unreadable message");
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  if (msg->ParseFromString(bytes)) return absl::OkStatus();
  google::protobuf::UnknownFieldSet raw;
  if (raw.ParseFromString(bytes)) {
    if (auto field = FindInvalidUtf8(msg->GetDescriptor(), raw, "")) {
      return absl::InvalidArgumentError(absl::StrCat(*field, ": invalid UTF-8"));
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("request: not a valid ", msg->GetDescriptor()->full_name(), " message"));
}

grpc::ByteBuffer SerializeMessage(const google::protobuf::Message& msg) {
  const std::string bytes = msg.SerializeAsString();
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

absl::StatusOr<const Tenant*> CheckAccess(ServiceContext& ctx,
                                          const grpc::CallbackServerContext& sctx) {
  if (ctx.draining.load()) return absl::UnavailableError("server is draining (shutting down)");
  if (!ctx.ready.load()) return absl::UnavailableError("model is loading");
  if (!ctx.keys) return &Anonymous();
  std::optional<std::string> auth;
  const auto& md = sctx.client_metadata();
  if (auto it = md.find("authorization"); it != md.end()) {
    auth = std::string(it->second.data(), it->second.size());
  }
  return ctx.keys->Authenticate(std::move(auth));
}

absl::StatusOr<std::unique_ptr<Admission>> Admit(ServiceContext& ctx,
                                                 const grpc::CallbackServerContext& sctx,
                                                 const grpc::ByteBuffer& buf) {
  auto a = std::make_unique<Admission>();
  ASSIGN_OR_RETURN(a->tenant, CheckAccess(ctx, sctx));
  RETURN_IF_ERROR(ParseMessage(buf, &a->request));
  ASSIGN_OR_RETURN(a->built, BuildRequest(a->request, *ctx.model));
  engine::Request& r = a->built.request;

  using P = engine::Priority;
  switch (a->request.priority()) {
    case v1::PRIORITY_UNSPECIFIED:
      r.priority = a->tenant->max_priority;
      break;
    case v1::PRIORITY_BATCH:
      r.priority = P::kBatch;
      break;
    case v1::PRIORITY_INTERACTIVE:
      if (a->tenant->max_priority == P::kBatch) {
        return absl::PermissionDeniedError(
            "priority: interactive is above the batch class this API key allows");
      }
      r.priority = P::kInteractive;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("priority: unknown value ", a->request.priority()));
  }
  if (a->request.request_id().size() > 256) {
    return absl::InvalidArgumentError("request_id: at most 256 bytes");
  }

  const absl::Time now = absl::Now();
  int64_t prompt_len = static_cast<int64_t>(r.prompt_token_ids.size());
  if (ctx.model->vision) {
    prompt_len +=
        static_cast<int64_t>(a->built.images.size()) * (ctx.model->vision->num_image_tokens - 1);
  }
  RETURN_IF_ERROR(ctx.limiter.Admit(*a->tenant, prompt_len, now));
  a->engine_id = absl::StrCat("req-", ctx.next_id.fetch_add(1) + 1);
  a->client_id = a->request.request_id().empty() ? a->engine_id : a->request.request_id();
  r.id = a->engine_id;
  r.arrival_time = now;
  const auto deadline = sctx.deadline();
  if (deadline != std::chrono::system_clock::time_point::max())
    r.deadline = absl::FromChrono(deadline);
  for (const PendingImage& im : a->built.images) {
    a->embeddings.push_back(ctx.encoder_cache->Lookup(im.prepared.digest));
  }
  if (!a->NeedsEncoding()) RETURN_IF_ERROR(Launch(ctx, *a));
  MUSE_LOG_REQ(debug, a->engine_id, "admitted: tenant {} client id '{}' input {}, {} image(s){}",
               a->tenant->name, a->client_id, a->built.input_field, a->built.images.size(),
               a->NeedsEncoding() ? " (to the image encoder)" : "");
  return a;
}

std::vector<const vision::PreparedImage*> Admission::ImagesToEncode() const {
  std::vector<const vision::PreparedImage*> out;
  for (size_t i = 0; i < embeddings.size(); ++i) {
    if (!embeddings[i]) out.push_back(&built.images[i].prepared);
  }
  return out;
}

void Admission::SetEncoded(std::vector<vision::ImageEmbedding> encoded) {
  size_t k = 0;
  for (auto& e : embeddings) {
    if (!e && k < encoded.size()) e = std::move(encoded[k++]);
  }
}

absl::Status Launch(ServiceContext& ctx, Admission& a) {
  engine::Request& r = a.built.request;
  if (!a.built.images.empty()) {
    const VisionInfo& v = *ctx.model->vision;
    std::vector<vision::ImageEmbedding> images;
    for (auto& e : a.embeddings) {
      if (!e) return absl::InternalError("image embeddings missing at launch");
      images.push_back(*e);
    }
    auto expanded =
        ExpandImagePlaceholders(r.prompt_token_ids, v.image_token_id, images, v.hidden_size);
    if (!expanded.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(a.built.input_field, ": ", expanded.status().message()));
    }
    r.prompt_token_ids = std::move(expanded->token_ids);
    r.content = std::move(expanded->content);
  }
  if (!a.built.skip_special_tokens) a.prompt_ids = r.prompt_token_ids;
  auto stream = ctx.engine->AddRequest(std::move(r));
  if (!stream.ok()) {
    // Engine messages name engine fields; the server checked all proto fields already.
    if (stream.status().code() == absl::StatusCode::kInvalidArgument) {
      return absl::InvalidArgumentError(absl::StrCat("request: ", stream.status().message()));
    }
    return stream.status();
  }
  a.stream = std::move(*stream);
  return absl::OkStatus();
}

}  // namespace muse::server
