#include "src/server/request_builder.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "src/engine/block_manager.h"
#include "src/server/structured_output.h"

namespace muse::server {
namespace {

constexpr int kMaxN = 16;
constexpr int kMaxTopLogprobs = 20;
constexpr int kMaxStops = 16;
constexpr int kDefaultMaxTokens = 16;
constexpr int kMaxToolJsonDepth = 64;  // tools[].parameters_json: JSON schemas nest far less

absl::Status Bad(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

bool InRange(float v, float lo, float hi) { return std::isfinite(v) && v >= lo && v <= hi; }

absl::Status CheckTokenId(const std::string& field, int64_t id, int64_t vocab) {
  if (id < 0 || id >= vocab) {
    return Bad(field, absl::StrCat("token id ", id, " is out of range [0, ", vocab, ")"));
  }
  return absl::OkStatus();
}

// The thinking budget (sampling.thinking_token_budget, issue #18) as the engine takes it: the
// `<think>` / `</think>` tags tokenized by the served tokenizer, and "\n\n" forced after a forced
// end tag (what Qwen3-style templates, models/muse-tiny-think's included, write after the block).
// The output starts inside the block when the prompt ends with the start tag (the template opened
// it); otherwise the block opens only if the output begins with the start tag.
absl::StatusOr<engine::ThinkingBudget> MakeThinkingBudget(int budget,
                                                          const std::vector<int32_t>& prompt,
                                                          const ServedModel& served) {
  constexpr std::string_view kField = "sampling.thinking_token_budget";
  const std::string field(kField);
  if (budget < 0) return Bad(field, absl::StrCat("must be >= 0, got ", budget));
  engine::ThinkingBudget t;
  t.budget = budget;
  auto start = served.tokenizer->Encode("<think>", /*add_special_tokens=*/false);
  auto end = served.tokenizer->Encode("</think>", /*add_special_tokens=*/false);
  auto suffix = served.tokenizer->Encode("\n\n", /*add_special_tokens=*/false);
  if (!start.ok() || !end.ok() || !suffix.ok() || start->empty() || end->empty()) {
    return Bad(field, "the model's tokenizer cannot encode the <think> / </think> tags");
  }
  t.start_token_ids = std::move(*start);
  t.end_token_ids = std::move(*end);
  t.forced_suffix_token_ids = std::move(*suffix);
  // The prompt's last few tokens decode to its tail text (special tokens kept).
  constexpr size_t kTail = 8;
  const std::span<const int32_t> tail(
      prompt.data() + prompt.size() - std::min(kTail, prompt.size()),
      std::min(kTail, prompt.size()));
  if (auto text = served.tokenizer->Decode(tail, /*skip_special_tokens=*/false); text.ok()) {
    t.starts_inside = absl::EndsWith(absl::StripTrailingAsciiWhitespace(*text), "<think>");
  }
  return t;
}

// "data:image/png;base64,...." -> bytes.
absl::StatusOr<std::string> DecodeDataUri(const std::string& uri, const std::string& field) {
  if (!absl::StartsWith(uri, "data:")) {
    return Bad(field, "only data: URIs are accepted (remote images are not fetched)");
  }
  const size_t comma = uri.find(',');
  if (comma == std::string::npos) return Bad(field, "malformed data: URI (no ',')");
  const absl::string_view meta(uri.data() + 5, comma - 5);
  if (!absl::StartsWith(meta, "image/")) return Bad(field, "data: URI must have an image/* type");
  if (!absl::EndsWith(meta, ";base64")) return Bad(field, "data: URI must be base64 encoded");
  std::string bytes;
  if (!absl::Base64Unescape(absl::string_view(uri).substr(comma + 1), &bytes)) {
    return Bad(field, "data: URI payload is not valid base64");
  }
  return bytes;
}

absl::Status CheckSampling(const v1::SamplingParams& s, int64_t vocab, engine::SamplingParams* p) {
  if (s.has_n()) {
    if (s.n() < 1 || s.n() > kMaxN) {
      return Bad("sampling.n", absl::StrCat("must be in [1, ", kMaxN, "], got ", s.n()));
    }
    p->n = s.n();
  }
  if (s.has_temperature()) {
    if (!InRange(s.temperature(), 0, 100)) {
      return Bad("sampling.temperature",
                 absl::StrCat("must be in [0, 100], got ", s.temperature()));
    }
    p->temperature = s.temperature();
  }
  if (s.has_top_p()) {
    if (!(std::isfinite(s.top_p()) && s.top_p() > 0 && s.top_p() <= 1)) {
      return Bad("sampling.top_p", absl::StrCat("must be in (0, 1], got ", s.top_p()));
    }
    p->top_p = s.top_p();
  }
  if (s.has_top_k()) {
    if (s.top_k() < -1) {
      return Bad("sampling.top_k", absl::StrCat("must be -1, 0 (off) or >= 1, got ", s.top_k()));
    }
    p->top_k = s.top_k();
  }
  if (s.has_min_p()) {
    if (!InRange(s.min_p(), 0, 1)) {
      return Bad("sampling.min_p", absl::StrCat("must be in [0, 1], got ", s.min_p()));
    }
    p->min_p = s.min_p();
  }
  if (s.has_repetition_penalty()) {
    if (!(std::isfinite(s.repetition_penalty()) && s.repetition_penalty() > 0)) {
      return Bad("sampling.repetition_penalty",
                 absl::StrCat("must be > 0, got ", s.repetition_penalty()));
    }
    p->repetition_penalty = s.repetition_penalty();
  }
  if (s.has_presence_penalty()) {
    if (!InRange(s.presence_penalty(), -2, 2)) {
      return Bad("sampling.presence_penalty",
                 absl::StrCat("must be in [-2, 2], got ", s.presence_penalty()));
    }
    p->presence_penalty = s.presence_penalty();
  }
  if (s.has_frequency_penalty()) {
    if (!InRange(s.frequency_penalty(), -2, 2)) {
      return Bad("sampling.frequency_penalty",
                 absl::StrCat("must be in [-2, 2], got ", s.frequency_penalty()));
    }
    p->frequency_penalty = s.frequency_penalty();
  }
  for (const auto& [token, bias] : s.logit_bias()) {
    const std::string field = absl::StrCat("sampling.logit_bias[", token, "]");
    RETURN_IF_ERROR(CheckTokenId(field, token, vocab));
    if (!InRange(bias, -100, 100))
      return Bad(field, absl::StrCat("must be in [-100, 100], got ", bias));
    p->logit_bias.emplace_back(token, bias);
  }
  if (s.has_seed()) p->seed = s.seed();
  if (s.top_logprobs() < 0 || s.top_logprobs() > kMaxTopLogprobs) {
    return Bad("sampling.top_logprobs",
               absl::StrCat("must be in [0, ", kMaxTopLogprobs, "], got ", s.top_logprobs()));
  }
  if (s.top_logprobs() > 0 && !s.logprobs()) {
    return Bad("sampling.top_logprobs", "needs sampling.logprobs = true");
  }
  p->logprobs = s.logprobs() ? s.top_logprobs() : -1;
  return absl::OkStatus();
}

absl::Status CheckStopping(const v1::StoppingCriteria& s, int64_t vocab, int64_t prompt_len,
                           int64_t max_model_len, int64_t default_max_tokens,
                           engine::SamplingParams* p) {
  const int64_t room = max_model_len - prompt_len;
  if (s.has_max_tokens()) {
    if (s.max_tokens() < 1) {
      return Bad("stopping.max_tokens", absl::StrCat("must be >= 1, got ", s.max_tokens()));
    }
    if (s.max_tokens() > room) {
      return Bad("stopping.max_tokens",
                 absl::StrCat("prompt (", prompt_len, " tokens) + max_tokens (", s.max_tokens(),
                              ") exceeds the context length ", max_model_len));
    }
    p->max_tokens = s.max_tokens();
  } else {
    p->max_tokens = static_cast<int>(std::max<int64_t>(1, std::min(default_max_tokens, room)));
  }
  if (s.min_tokens() < 0 || s.min_tokens() > p->max_tokens) {
    return Bad("stopping.min_tokens", absl::StrCat("must be in [0, max_tokens = ", p->max_tokens,
                                                   "], got ", s.min_tokens()));
  }
  p->min_tokens = s.min_tokens();
  if (s.stop_size() > kMaxStops) {
    return Bad("stopping.stop",
               absl::StrCat("at most ", kMaxStops, " stop strings, got ", s.stop_size()));
  }
  for (int i = 0; i < s.stop_size(); ++i) {
    if (s.stop(i).empty()) return Bad(absl::StrCat("stopping.stop[", i, "]"), "must not be empty");
    p->stop.push_back(s.stop(i));
  }
  for (int i = 0; i < s.stop_token_ids_size(); ++i) {
    RETURN_IF_ERROR(
        CheckTokenId(absl::StrCat("stopping.stop_token_ids[", i, "]"), s.stop_token_ids(i), vocab));
    p->stop_token_ids.push_back(s.stop_token_ids(i));
  }
  p->ignore_eos = s.ignore_eos();
  return absl::OkStatus();
}

// One image / image_url part -> PendingImage (decode + preprocess on the calling gRPC thread).
absl::Status PrepareImagePart(const v1::ContentPart& part, const std::string& pfield,
                              const ServedModel& served, std::vector<PendingImage>* images) {
  const bool is_url = part.part_case() == v1::ContentPart::kImageUrl;
  const std::string ifield = pfield + (is_url ? ".image_url" : ".image");
  if (!served.vision) {
    std::string bytes;
    if (is_url) {
      ASSIGN_OR_RETURN(bytes, DecodeDataUri(part.image_url(), ifield));
    } else {
      bytes = part.image();
    }
    RETURN_IF_ERROR(CheckImageBytes(bytes, ifield));
    return Bad(ifield, absl::StrCat("model ", served.id, " does not accept images"));
  }
  const std::string& input = is_url ? part.image_url() : part.image();
  if (is_url && !vision::IsDataUri(input)) {
    return Bad(ifield, "only data: URIs are accepted (remote images are not fetched)");
  }
  if (input.empty()) return Bad(ifield, "empty image");
  if (images == nullptr) return absl::OkStatus();
  auto prepared = vision::PrepareImage(input, served.vision->preprocessor, served.vision->limits);
  if (!prepared.ok()) return Bad(ifield, std::string(prepared.status().message()));
  images->push_back({ifield, std::move(*prepared)});
  return absl::OkStatus();
}

// One audio / audio_url part -> PendingAudio (decode + resample + features on the calling thread).
absl::Status PrepareAudioPart(const v1::ContentPart& part, const std::string& pfield,
                              const ServedModel& served, std::vector<PendingAudio>* audios) {
  const bool is_url = part.part_case() == v1::ContentPart::kAudioUrl;
  const std::string afield = pfield + (is_url ? ".audio_url" : ".audio");
  if (!served.audio)
    return Bad(afield, absl::StrCat("model ", served.id, " does not accept audio"));
  const std::string& input = is_url ? part.audio_url() : part.audio();
  if (is_url && !vision::IsDataUri(input)) {
    return Bad(afield, "only data: URIs are accepted (remote audio is not fetched)");
  }
  if (input.empty()) return Bad(afield, "empty audio");
  if (audios == nullptr) return absl::OkStatus();
  auto prepared = PrepareAudio(input, is_url, served.audio->features, served.audio->limits);
  if (!prepared.ok()) return Bad(afield, std::string(prepared.status().message()));
  const int32_t tokens = AudioInfo::NumTokens(prepared->features.valid_frames);
  if (tokens < 1) {
    return Bad(afield, absl::StrCat("clip too short: ", prepared->seconds * 1e3,
                                    " ms gives no audio token (at least ",
                                    3 * served.audio->features.hop_length * 1000 /
                                        served.audio->features.sampling_rate,
                                    " ms needed)"));
  }
  audios->push_back({afield, std::move(*prepared), tokens});
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckImageBytes(const std::string& b, const std::string& field) {
  static constexpr unsigned char kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  auto u = [&](size_t i) { return static_cast<unsigned char>(b[i]); };
  if (b.empty()) return Bad(field, "empty image");
  if (b.size() >= 33 && std::equal(kPng, kPng + 8, b.begin(), [](unsigned char x, char y) {
        return x == static_cast<unsigned char>(y);
      })) {
    if (b.compare(12, 4, "IHDR") != 0) return Bad(field, "undecodable PNG image (no IHDR chunk)");
    const uint32_t w = (u(16) << 24) | (u(17) << 16) | (u(18) << 8) | u(19);
    const uint32_t h = (u(20) << 24) | (u(21) << 16) | (u(22) << 8) | u(23);
    if (w == 0 || h == 0) return Bad(field, "undecodable PNG image (zero width or height)");
    return absl::OkStatus();
  }
  if (b.size() >= 4 && u(0) == 0xFF && u(1) == 0xD8 && u(2) == 0xFF) {
    if (u(b.size() - 2) != 0xFF || u(b.size() - 1) != 0xD9) {
      return Bad(field, "undecodable JPEG image (truncated: no end-of-image marker)");
    }
    return absl::OkStatus();
  }
  return Bad(field, "undecodable image (not PNG or JPEG)");
}

absl::Status CheckModelName(const std::string& model, const ServedModel& served) {
  if (!model.empty() && model != served.id) {
    return absl::NotFoundError(
        absl::StrCat("model: unknown model '", model, "' (this server serves '", served.id, "')"));
  }
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::ordered_json> ParseToolJson(const std::string& text,
                                                     const std::string& field) {
  // Nesting is bounded while parsing: a deep document parses fine but every later copy, dump or
  // conversion of it recurses once per level (a 2 MB "[[[[..." overflowed the stack).
  bool too_deep = false;
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(
      text,
      [&too_deep](int depth, nlohmann::ordered_json::parse_event_t, nlohmann::ordered_json&) {
        if (depth <= kMaxToolJsonDepth) return true;
        too_deep = true;
        return false;
      },
      /*allow_exceptions=*/false);
  if (too_deep) return Bad(field, absl::StrCat("nests deeper than ", kMaxToolJsonDepth, " levels"));
  if (j.is_discarded()) return Bad(field, "is not valid JSON");
  return j;
}

absl::StatusOr<std::vector<int32_t>> TokenizeChat(
    const google::protobuf::RepeatedPtrField<v1::ChatMessage>& messages,
    const google::protobuf::RepeatedPtrField<v1::Tool>& tools, bool add_generation_prompt,
    const ServedModel& served, std::vector<PendingImage>* images,
    std::vector<PendingAudio>* audios) {
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  for (int i = 0; i < messages.size(); ++i) {
    const v1::ChatMessage& m = messages[i];
    const std::string field = absl::StrCat("messages[", i, "]");
    if (m.role() != "system" && m.role() != "user" && m.role() != "assistant" &&
        m.role() != "tool") {
      return Bad(field + ".role",
                 absl::StrCat("must be system, user, assistant or tool, got '", m.role(), "'"));
    }
    std::string text;
    nlohmann::ordered_json parts =
        nlohmann::ordered_json::array();  // used when the message has an image or audio
    bool has_media = false;
    for (int j = 0; j < m.content_size(); ++j) {
      const v1::ContentPart& part = m.content(j);
      const std::string pfield = absl::StrCat(field, ".content[", j, "]");
      switch (part.part_case()) {
        case v1::ContentPart::kText:
          text += part.text();
          parts.push_back({{"type", "text"}, {"text", part.text()}});
          break;
        case v1::ContentPart::kImage:
        case v1::ContentPart::kImageUrl:
          RETURN_IF_ERROR(PrepareImagePart(part, pfield, served, images));
          has_media = true;
          parts.push_back({{"type", "image"}});
          continue;
        case v1::ContentPart::kAudio:
        case v1::ContentPart::kAudioUrl:
          RETURN_IF_ERROR(PrepareAudioPart(part, pfield, served, audios));
          has_media = true;
          parts.push_back({{"type", "audio"}});
          continue;
        case v1::ContentPart::PART_NOT_SET:
          return Bad(pfield, "empty content part (set text, image, image_url, audio or audio_url)");
      }
    }
    // Text-only messages stay strings: the template renders them exactly as before.
    nlohmann::ordered_json jm = {
        {"role", m.role()},
        {"content", has_media ? std::move(parts) : nlohmann::ordered_json(text)}};
    if (!m.name().empty()) jm["name"] = m.name();
    if (!m.tool_call_id().empty()) jm["tool_call_id"] = m.tool_call_id();
    if (!m.reasoning_content().empty()) {
      if (m.role() != "assistant") {
        return Bad(field + ".reasoning_content",
                   absl::StrCat("only assistant messages carry reasoning, this one is role '",
                                m.role(), "'"));
      }
      jm["reasoning_content"] = m.reasoning_content();
    }
    if (!m.tool_calls().empty()) {
      if (m.role() != "assistant") {
        return Bad(field + ".tool_calls", absl::StrCat("only assistant messages carry tool calls, "
                                                       "this one is role '",
                                                       m.role(), "'"));
      }
      // OpenAI's shape; the arguments as an object, as the templates (and vLLM) expect.
      nlohmann::ordered_json calls = nlohmann::ordered_json::array();
      for (int k = 0; k < m.tool_calls_size(); ++k) {
        const v1::ToolCall& c = m.tool_calls(k);
        const std::string cfield = absl::StrCat(field, ".tool_calls[", k, "]");
        if (c.id().empty()) return Bad(cfield + ".id", "must not be empty");
        if (c.name().empty()) return Bad(cfield + ".name", "must not be empty");
        nlohmann::ordered_json args = nlohmann::ordered_json::object();
        if (!c.arguments().empty()) {
          ASSIGN_OR_RETURN(args, ParseToolJson(c.arguments(), cfield + ".arguments"));
          if (!args.is_object()) return Bad(cfield + ".arguments", "must be a JSON object");
        }
        calls.push_back({{"id", c.id()},
                         {"type", "function"},
                         {"function", {{"name", c.name()}, {"arguments", std::move(args)}}}});
      }
      jm["tool_calls"] = std::move(calls);
    }
    msgs.push_back(std::move(jm));
  }
  if (msgs.empty()) return Bad("messages", "must not be empty");
  if (!served.chat_template) {
    return Bad("messages", absl::StrCat("model ", served.id, " has no chat template; send prompt"));
  }
  nlohmann::ordered_json ctx = {{"messages", std::move(msgs)},
                                {"add_generation_prompt", add_generation_prompt},
                                {"bos_token", served.bos_token},
                                {"eos_token", served.eos_token}};
  if (!tools.empty()) {
    nlohmann::ordered_json jt = nlohmann::ordered_json::array();
    for (int i = 0; i < tools.size(); ++i) {
      nlohmann::ordered_json params = nlohmann::ordered_json::object();
      if (!tools[i].parameters_json().empty()) {
        ASSIGN_OR_RETURN(params, ParseToolJson(tools[i].parameters_json(),
                                               absl::StrCat("tools[", i, "].parameters_json")));
      }
      jt.push_back({{"type", tools[i].type().empty() ? "function" : tools[i].type()},
                    {"function",
                     {{"name", tools[i].name()},
                      {"description", tools[i].description()},
                      {"parameters", params}}}});
    }
    ctx["tools"] = std::move(jt);
  }
  auto rendered = served.chat_template->Render(ctx);
  if (!rendered.ok()) {
    return Bad("messages", absl::StrCat("chat template: ", rendered.status().message()));
  }
  auto ids = served.tokenizer->Encode(*rendered, /*add_special_tokens=*/false);
  if (!ids.ok()) return Bad("messages", std::string(ids.status().message()));
  return std::move(*ids);
}

absl::StatusOr<BuiltRequest> BuildRequest(const v1::GenerateRequest& req, const ServedModel& served,
                                          const BuildOptions& options) {
  RETURN_IF_ERROR(CheckModelName(req.model(), served));
  const int64_t vocab = served.config.vocab_size;
  BuiltRequest out;
  const int inputs =
      !req.prompt().empty() + !req.prompt_token_ids().empty() + !req.messages().empty();
  if (inputs == 0) {
    return Bad("input", "one of prompt, prompt_token_ids or messages is required (all are empty)");
  }
  if (inputs > 1) return Bad("input", "set only one of prompt, prompt_token_ids or messages");
  std::vector<int32_t>& ids = out.request.prompt_token_ids;
  if (!req.images().empty() && req.messages().empty()) {
    for (int k = 0; k < req.images_size(); ++k) {
      const std::string field = absl::StrCat("images[", k, "]");
      const auto pc = req.images(k).part_case();
      if (pc == v1::ContentPart::kAudio || pc == v1::ContentPart::kAudioUrl) {
        RETURN_IF_ERROR(PrepareAudioPart(req.images(k), field, served, &out.audios));
        continue;
      }
      if (pc != v1::ContentPart::kImage && pc != v1::ContentPart::kImageUrl) {
        return Bad(field, "must be an image, image_url, audio or audio_url part");
      }
      RETURN_IF_ERROR(PrepareImagePart(req.images(k), field, served, &out.images));
    }
  } else if (!req.images().empty()) {
    return Bad("images",
               "only with prompt or prompt_token_ids; chat messages carry images as content parts");
  }
  if (!req.prompt().empty()) {
    out.input_field = "prompt";
    auto enc = served.tokenizer->Encode(req.prompt(), /*add_special_tokens=*/true);
    if (!enc.ok()) return Bad("prompt", std::string(enc.status().message()));
    ids = std::move(*enc);
  } else if (!req.prompt_token_ids().empty()) {
    out.input_field = "prompt_token_ids";
    for (int i = 0; i < req.prompt_token_ids_size(); ++i) {
      RETURN_IF_ERROR(
          CheckTokenId(absl::StrCat("prompt_token_ids[", i, "]"), req.prompt_token_ids(i), vocab));
    }
    ids.assign(req.prompt_token_ids().begin(), req.prompt_token_ids().end());
  } else {
    out.input_field = "messages";
    const bool gen_prompt = !req.has_add_generation_prompt() || req.add_generation_prompt();
    ASSIGN_OR_RETURN(ids, TokenizeChat(req.messages(), req.tools(), gen_prompt, served, &out.images,
                                       &out.audios));
  }
  if (ids.empty()) return Bad(out.input_field, "tokenizes to zero tokens");
  int64_t prompt_len = static_cast<int64_t>(ids.size());
  if (served.vision) {
    // Placeholders map to images in order; each expands to num_image_tokens rows.
    const int64_t placeholders = std::count(ids.begin(), ids.end(), served.vision->image_token_id);
    const int64_t n = static_cast<int64_t>(out.images.size());
    if (placeholders != n) {
      return Bad(out.input_field,
                 absl::StrCat(placeholders, " image placeholder(s) ", served.vision->image_token,
                              " (token ", served.vision->image_token_id, ") but ", n, " image(s)",
                              out.input_field == "messages" ? "" : " in images"));
    }
    prompt_len += n * (served.vision->num_image_tokens - 1);
  }
  if (served.audio) {
    // Audio placeholders map to clips in order; each expands to its own number of rows.
    const int64_t placeholders = std::count(ids.begin(), ids.end(), served.audio->audio_token_id);
    const int64_t n = static_cast<int64_t>(out.audios.size());
    if (placeholders != n) {
      return Bad(out.input_field,
                 absl::StrCat(placeholders, " audio placeholder(s) ", served.audio->audio_token,
                              " (token ", served.audio->audio_token_id, ") but ", n,
                              " audio clip(s)", out.input_field == "messages" ? "" : " in images"));
    }
    for (const PendingAudio& a : out.audios) prompt_len += a.num_tokens - 1;
  }
  if (prompt_len >= served.max_model_len) {
    return Bad(out.input_field,
               absl::StrCat(prompt_len, " prompt tokens leave no room in the context length ",
                            served.max_model_len));
  }
  engine::SamplingParams& p = out.request.sampling;
  RETURN_IF_ERROR(CheckSampling(req.sampling(), vocab, &p));
  // What the KV pool holds for one sequence after the prompt (the block check below).
  const int64_t pool_room = served.kv_blocks_total * kernels::kKvBlockSize - prompt_len;
  const int64_t default_max_tokens =
      options.max_tokens_fill_context ? pool_room : int64_t{kDefaultMaxTokens};
  RETURN_IF_ERROR(CheckStopping(req.stopping(), vocab, prompt_len, served.max_model_len,
                                default_max_tokens, &p));
  std::optional<int> budget = options.default_thinking_token_budget;
  if (req.sampling().has_thinking_token_budget()) budget = req.sampling().thinking_token_budget();
  // The server's default leaves structured-output requests alone; an explicit budget with one is
  // refused below.
  const bool constrained =
      req.response_format().format_case() != v1::ResponseFormat::FORMAT_NOT_SET;
  if (budget && (req.sampling().has_thinking_token_budget() || !constrained)) {
    ASSIGN_OR_RETURN(p.thinking, MakeThinkingBudget(*budget, ids, served));
  }
  // Stop strings apply to content only where the reasoning channel is parsed (chat messages on a
  // model with one): the engine follows the think block (without a budget: an unlimited one) and
  // matches them after it. Forced tool calls / response formats have no block.
  if (!p.stop.empty() && served.chat_formats.reasoning && out.input_field == "messages" &&
      !constrained) {
    if (!p.thinking) {
      auto follow = MakeThinkingBudget(engine::ThinkingBudget::kUnlimited, ids, served);
      if (follow.ok()) p.thinking = std::move(*follow);  // tags not encodable: stops apply to all
    }
    if (p.thinking) p.thinking->stops_after_block = true;
  }
  if (p.n > served.max_num_seqs) {
    return Bad("sampling.n",
               absl::StrCat("must be <= max_num_seqs (", served.max_num_seqs, "), got ", p.n));
  }
  out.skip_special_tokens = !req.has_skip_special_tokens() || req.skip_special_tokens();
  if (!out.skip_special_tokens && !p.stop.empty()) {
    return absl::UnimplementedError(
        "skip_special_tokens: false together with stopping.stop is not supported yet");
  }
  const int64_t total_blocks = engine::BlockManager::BlocksFor(int64_t{prompt_len} + p.max_tokens);
  if (total_blocks > served.kv_blocks_total) {
    return Bad("stopping.max_tokens",
               absl::StrCat("prompt + max_tokens need ", total_blocks,
                            " KV blocks but the pool has ", served.kv_blocks_total));
  }
  // Last: the one check that may compile (0.01-1 s), once everything cheap has passed.
  if (options.defer_compile) {
    ASSIGN_OR_RETURN(ResponseFormatLookup rf, LookupResponseFormat(req.response_format(), served));
    p.grammar = std::move(rf.grammar);
    out.to_compile = std::move(rf.to_compile);
  } else {
    ASSIGN_OR_RETURN(p.grammar, CompileResponseFormat(req.response_format(), served));
  }
  if (p.thinking && (p.grammar || out.to_compile)) {
    return Bad("sampling.thinking_token_budget",
               "cannot be combined with response_format (structured output) yet");
  }
  return out;
}

}  // namespace muse::server
