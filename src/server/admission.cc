// Request admission shared by both faces (see service_context.h).
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "src/common/logging.h"
#include "src/server/image_prompt.h"
#include "src/server/service_context.h"

namespace muse::server {
namespace {

const Tenant& Anonymous() {
  static const Tenant t{.name = "anonymous", .max_priority = engine::Priority::kInteractive};
  return t;
}

}  // namespace

absl::StatusOr<const Tenant*> CheckAccess(ServiceContext& ctx,
                                          std::optional<std::string> authorization) {
  if (ctx.draining.load()) return absl::UnavailableError("server is draining (shutting down)");
  if (!ctx.ready.load()) return absl::UnavailableError("model is loading");
  if (!ctx.keys) return &Anonymous();
  return ctx.keys->Authenticate(std::move(authorization));
}

absl::StatusOr<std::unique_ptr<Admission>> Admit(ServiceContext& ctx, const Tenant* tenant,
                                                 v1::GenerateRequest request,
                                                 const AdmitOptions& options) {
  auto a = std::make_unique<Admission>();
  a->tenant = tenant;
  a->request = std::move(request);
  BuildOptions build = options.build;
  if (!build.default_thinking_token_budget) {
    build.default_thinking_token_budget = ctx.default_thinking_token_budget;
  }
  ASSIGN_OR_RETURN(a->built, BuildRequest(a->request, *ctx.model, build));
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
  for (const PendingAudio& au : a->built.audios) prompt_len += au.num_tokens - 1;
  RETURN_IF_ERROR(ctx.limiter.Admit(*a->tenant, prompt_len, now));
  a->engine_id = absl::StrCat("req-", ctx.next_id.fetch_add(1) + 1);
  a->client_id = a->request.request_id().empty() ? a->engine_id : a->request.request_id();
  r.id = a->engine_id;
  r.arrival_time = now;
  if (options.deadline) r.deadline = *options.deadline;
  for (const PendingImage& im : a->built.images) {
    a->embeddings.push_back(ctx.encoder_cache->Lookup(im.prepared.digest));
  }
  for (const PendingAudio& au : a->built.audios) {
    a->embeddings.push_back(ctx.encoder_cache->Lookup(au.prepared.digest));
  }
  if (!a->NeedsCompile() && !a->NeedsEncoding()) RETURN_IF_ERROR(Launch(ctx, *a));
  MUSE_LOG_REQ(debug, a->engine_id,
               "admitted: tenant {} client id '{}' input {}, {} image(s), {} audio clip(s){}{}",
               a->tenant->name, a->client_id, a->built.input_field, a->built.images.size(),
               a->built.audios.size(), a->NeedsCompile() ? " (to the compile pool)" : "",
               a->NeedsEncoding() ? " (to the encoder)" : "");
  return a;
}

std::vector<const vision::PreparedImage*> Admission::ImagesToEncode() const {
  std::vector<const vision::PreparedImage*> out;
  for (size_t i = 0; i < built.images.size(); ++i) {
    if (!embeddings[i]) out.push_back(&built.images[i].prepared);
  }
  return out;
}

std::vector<const PreparedAudio*> Admission::AudiosToEncode() const {
  std::vector<const PreparedAudio*> out;
  const size_t first = built.images.size();
  for (size_t i = 0; i < built.audios.size(); ++i) {
    if (!embeddings[first + i]) out.push_back(&built.audios[i].prepared);
  }
  return out;
}

void Admission::SetEncoded(std::vector<vision::ImageEmbedding> encoded) {
  size_t k = 0;
  for (auto& e : embeddings) {
    if (!e && k < encoded.size()) e = std::move(encoded[k++]);
  }
}

absl::Status CompilePending(ServiceContext& ctx, Admission& a) {
  if (!a.built.to_compile) return absl::OkStatus();
  ASSIGN_OR_RETURN(a.built.request.sampling.grammar,
                   CompileResponseFormat(*a.built.to_compile, *ctx.model));
  a.built.to_compile.reset();
  return absl::OkStatus();
}

absl::Status Launch(ServiceContext& ctx, Admission& a) {
  engine::Request& r = a.built.request;
  if (!a.built.images.empty() || !a.built.audios.empty()) {
    std::vector<PlaceholderGroup> groups;
    if (ctx.model->vision) {
      groups.push_back({"images", "image", "image(s)", ctx.model->vision->image_token_id, {}});
      for (size_t i = 0; i < a.built.images.size(); ++i) {
        if (!a.embeddings[i]) return absl::InternalError("image embeddings missing at launch");
        groups.back().embeddings.push_back(*a.embeddings[i]);
      }
    }
    if (ctx.model->audio) {
      groups.push_back({"audio", "audio", "audio clip(s)", ctx.model->audio->audio_token_id, {}});
      for (size_t i = a.built.images.size(); i < a.embeddings.size(); ++i) {
        if (!a.embeddings[i]) return absl::InternalError("audio embeddings missing at launch");
        groups.back().embeddings.push_back(*a.embeddings[i]);
      }
    }
    auto expanded = ExpandPlaceholders(r.prompt_token_ids, groups, ctx.model->config.hidden_size);
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

void RecordFinished(ServiceContext& ctx, const Admission& a, const engine::Usage& usage,
                    const engine::Timings& timings, const std::string& finish_reason) {
  ctx.metrics.RecordGeneration(usage, timings, finish_reason);
  ctx.limiter.Finish(*a.tenant, usage.completion_tokens, absl::Now());
}

absl::StatusOr<v1::TokenizeResponse> Tokenize(ServiceContext& ctx, const v1::TokenizeRequest& req) {
  const ServedModel& m = *ctx.model;
  RETURN_IF_ERROR(CheckModelName(req.model(), m));
  if (req.prompt().empty() == req.messages().empty()) {
    return absl::InvalidArgumentError("input: set exactly one of prompt or messages");
  }
  v1::TokenizeResponse resp;
  std::vector<int32_t> ids;
  if (!req.prompt().empty()) {
    auto enc = m.tokenizer->Encode(req.prompt(), /*add_special_tokens=*/true);
    if (!enc.ok())
      return absl::InvalidArgumentError(absl::StrCat("prompt: ", enc.status().message()));
    ids = std::move(*enc);
  } else {
    const bool gen = !req.has_add_generation_prompt() || req.add_generation_prompt();
    ASSIGN_OR_RETURN(ids, TokenizeChat(req.messages(), {}, gen, m));
  }
  for (int32_t id : ids) {
    resp.add_token_ids(id);
    if (req.return_tokens()) resp.add_tokens(m.tokenizer->IdToToken(id).value_or(""));
  }
  resp.set_max_model_len(m.max_model_len);
  return resp;
}

absl::StatusOr<std::string> Detokenize(ServiceContext& ctx, const std::string& model,
                                       const std::vector<int32_t>& ids) {
  const ServedModel& m = *ctx.model;
  RETURN_IF_ERROR(CheckModelName(model, m));
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= m.config.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tokens[", i, "]: token id ", ids[i], " is out of range [0, ", m.config.vocab_size, ")"));
    }
  }
  auto text = m.tokenizer->Decode(ids, /*skip_special_tokens=*/false);
  if (!text.ok())
    return absl::InvalidArgumentError(absl::StrCat("tokens: ", text.status().message()));
  return text;
}

}  // namespace muse::server
