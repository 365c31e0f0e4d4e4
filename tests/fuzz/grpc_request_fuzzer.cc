// libFuzzer target: gRPC request validation. An arbitrary muse.v1.GenerateRequest (the input is
// its wire bytes, or protobuf text format when the first byte is 't', which mutates into deeper
// requests) goes through BuildRequest exactly as admission runs it, against a served LLaVA-style
// model with the real Llama 3 tokenizer and chat template: prompt / token ids / chat messages,
// images as data URIs, every sampling and stopping field.
//
// Invariants: a refusal is InvalidArgument / NotFound / Unimplemented whose message starts with
// the field path; an accepted request is within every limit (token ids in the vocabulary,
// placeholders match the images, prompt + max_tokens within the context and the KV pool, n and
// top_logprobs in range). Nothing crashes, leaks or hangs.
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/text_format.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include "muse/v1/inference.pb.h"
#include "src/engine/block_manager.h"
#include "src/server/request_builder.h"
#include "src/tokenizer/jinja/tokenizer_config.h"

namespace {

void Check(bool ok, const char* what, const std::string& detail = "") {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s %s\n", what, detail.c_str());
    std::abort();
  }
}

const muse::server::ServedModel& Served() {
  static const muse::server::ServedModel* served = [] {
    auto* s = new muse::server::ServedModel();
    const std::string dir = std::string(MUSE_TOKENIZER_MODELS) + "/tokenizer-llama3/models";
    auto tok = muse::tokenizer::Tokenizer::FromFile(dir + "/tokenizer.json");
    Check(tok.ok(), "tokenizer loads", std::string(tok.status().message()));
    s->tokenizer = std::move(*tok);
    auto cfg = muse::jinja::LoadTokenizerConfig(dir + "/tokenizer_config.json");
    Check(cfg.ok(), "tokenizer_config loads");
    auto source = cfg->SelectTemplate();
    Check(source.ok(), "chat template present");
    auto tmpl = muse::jinja::ChatTemplate::Parse(*source);
    Check(tmpl.ok(), "chat template parses");
    s->chat_template.emplace(std::move(*tmpl));
    s->bos_token = cfg->bos_token.value_or("");
    s->eos_token = cfg->eos_token.value_or("");
    s->id = "muse-tiny";
    s->config.vocab_size = 128256;
    s->config.eos_token_ids = {128009};
    s->max_model_len = 512;
    s->kv_blocks_total = 24;  // 384 tokens: the pool check binds before the context length
    s->max_num_seqs = 8;
    muse::server::VisionInfo v;
    v.preprocessor.shortest_edge = 8;  // small: the fuzzer exercises decoding, not resizing speed
    v.preprocessor.crop_height = v.preprocessor.crop_width = 8;
    v.limits.max_bytes = 1 << 16;
    v.limits.max_pixels = 64 * 64;
    v.image_token = "<|reserved_special_token_0|>";
    v.image_token_id = 128002;
    v.num_image_tokens = 4;
    v.hidden_size = 16;
    s->vision = v;
    s->supports_images = true;
    muse::server::AudioInfo a;  // a 1 s feature window: the fuzzer exercises decoding, not FFTs
    a.features.chunk_length = 1;
    a.limits.max_bytes = 1 << 16;
    a.limits.max_seconds = 4;
    a.audio_token = "<|reserved_special_token_1|>";
    a.audio_token_id = 128003;
    a.hidden_size = 16;
    s->audio = a;
    return s;
  }();
  return *served;
}

}  // namespace

// LeakSanitizer: libsndfile 1.2.0 (Debian 12) leaks the vorbis_info of some malformed Ogg Vorbis
// streams (as audio_fuzzer notes); audio parts reach it through PrepareAudio.
extern "C" const char* __lsan_default_suppressions() { return "leak:vorbis_info_init\n"; }

namespace {

// Text-format syntax errors are expected for most mutations: keep them off stderr.
class Silent : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int, int, const std::string&) override {}
};

}  // namespace

// Loading the 128k-vocabulary tokenizer takes seconds under ASan: outside the per-input timeout.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Invalid UTF-8 in string fields is logged by the parser: expected here.
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel, const char*, int, const std::string&) {});
  Served();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  muse::v1::GenerateRequest req;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  if (!bytes.empty() && bytes[0] == 't') {
    google::protobuf::TextFormat::Parser parser;
    parser.AllowPartialMessage(true);
    Silent silent;
    parser.RecordErrorsTo(&silent);
    if (!parser.ParseFromString(bytes.substr(1), &req)) return 0;
  } else if (!req.ParseFromString(bytes)) {
    return 0;
  }
  const muse::server::ServedModel& served = Served();
  for (const bool fill : {false, true}) {
    muse::server::BuildOptions options;
    options.max_tokens_fill_context = fill;
    auto built = muse::server::BuildRequest(req, served, options);
    if (!built.ok()) {
      const absl::StatusCode code = built.status().code();
      Check(code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kNotFound ||
                code == absl::StatusCode::kUnimplemented,
            "error code", built.status().ToString());
      static const std::regex kField(R"(^[a-z_]+(\[\d+\])?(\.[a-z_]+(\[\d+\])?)*: .+)",
                                     std::regex::optimize);
      const std::string message(built.status().message());
      Check(std::regex_search(message, kField), "error names a field", message);
      continue;
    }
    const auto& r = built->request;
    Check(!r.prompt_token_ids.empty(), "non-empty prompt");
    int64_t placeholders = 0, audio_placeholders = 0;
    for (const int32_t id : r.prompt_token_ids) {
      Check(id >= 0 && id < served.config.vocab_size, "prompt id in vocabulary");
      placeholders += id == served.vision->image_token_id;
      audio_placeholders += id == served.audio->audio_token_id;
    }
    Check(placeholders == static_cast<int64_t>(built->images.size()), "one image per placeholder");
    Check(audio_placeholders == static_cast<int64_t>(built->audios.size()),
          "one clip per audio placeholder");
    int64_t prompt_len = static_cast<int64_t>(r.prompt_token_ids.size()) +
                         placeholders * (served.vision->num_image_tokens - 1);
    for (const auto& clip : built->audios) {
      const auto& f = clip.prepared.features;
      Check(f.n_mels == 80 && f.n_frames == 100 && f.data.size() == size_t{80} * 100,
            "audio features are [80, 100]");
      Check(f.valid_frames >= 1 && f.valid_frames <= f.n_frames, "valid frames in range");
      Check(clip.num_tokens >= 1 &&
                clip.num_tokens == muse::server::AudioInfo::NumTokens(f.valid_frames),
            "a clip expands to its token count");
      prompt_len += clip.num_tokens - 1;
    }
    const auto& p = r.sampling;
    Check(p.max_tokens >= 1, "max_tokens >= 1");
    Check(prompt_len + p.max_tokens <= served.max_model_len, "within the context length");
    Check(
        muse::engine::BlockManager::BlocksFor(prompt_len + p.max_tokens) <= served.kv_blocks_total,
        "within the KV pool");
    Check(p.n >= 1 && p.n <= served.max_num_seqs, "n in range");
    Check(p.logprobs >= -1 && p.logprobs <= 20, "top_logprobs in range");
    for (const auto& image : built->images) {
      const auto& px = image.prepared.pixels;
      Check(px.height == 8 && px.width == 8 && px.data.size() == size_t{3} * 8 * 8,
            "image preprocessed to 3x8x8", image.field);
    }
  }
  return 0;
}
