// The gRPC face's request decoding: raw ByteBuffer -> message (invalid UTF-8 named by field),
// metadata -> CheckAccess, the call deadline -> the engine deadline. Everything after that is the
// protocol-neutral admission (admission.cc).
#include <google/protobuf/descriptor.h>
#include <google/protobuf/unknown_field_set.h>

#include <chrono>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "src/server/inference_service.h"
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

}  // namespace

absl::Status CallEndedStatus(std::chrono::system_clock::time_point deadline) {
  if (std::chrono::system_clock::now() >= deadline) {
    return absl::DeadlineExceededError("deadline exceeded");
  }
  return absl::CancelledError("cancelled by the client");
}

absl::Status ParseMessage(const grpc::ByteBuffer& buf, google::protobuf::Message* msg) {
  if (!buf.Valid()) return absl::CancelledError("the call ended before its request arrived");
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
  std::optional<std::string> auth;
  const auto& md = sctx.client_metadata();
  if (auto it = md.find("authorization"); it != md.end()) {
    auth = std::string(it->second.data(), it->second.size());
  }
  return CheckAccess(ctx, std::move(auth));
}

absl::StatusOr<std::unique_ptr<Admission>> Admit(ServiceContext& ctx,
                                                 const grpc::CallbackServerContext& sctx,
                                                 const grpc::ByteBuffer& buf, ToolPlan* plan) {
  ASSIGN_OR_RETURN(const Tenant* tenant, CheckAccess(ctx, sctx));
  if (!buf.Valid()) return CallEndedStatus(sctx.deadline());  // see ParseMessage
  v1::GenerateRequest request;
  RETURN_IF_ERROR(ParseMessage(buf, &request));
  ASSIGN_OR_RETURN(*plan, ApplyToolChoice(ctx.model->chat_formats, &request));
  AdmitOptions options;
  // A response format the cache does not hold compiles on ctx.compiles, not on this gRPC thread.
  options.build.defer_compile = ctx.compiles != nullptr;
  const auto deadline = sctx.deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    options.deadline = absl::FromChrono(deadline);
  }
  auto a = Admit(ctx, tenant, std::move(request), options);
  if (!a.ok()) return RenameToolChoiceError(a.status(), *plan);
  return a;
}

}  // namespace muse::server
