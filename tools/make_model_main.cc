// muse-make-model: writes a HF model directory (config.json, generation_config.json,
// model.safetensors or shards + index) with deterministic random weights, for tests and
// benchmarks without downloading a model.
//
//   muse-make-model --preset muse-tiny --tokenizer DIR --out models/muse-tiny
//   muse-make-model --preset llava-tiny --tokenizer DIR --think-template --out
//   models/muse-tiny-think muse-make-model --preset small --arch qwen2 --dtype bfloat16 --seed 7
//   --out /tmp/small muse-make-model --preset llama3-8b-shape --out /data/l3-shape   (16 GB in
//   bfloat16)
// `muse-make-model --help` for every flag. The files written are listed on stdout.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "models/checkpoint.h"
#include "models/llama/llama_weights.h"
#include "models/model_config.h"
#include "models/testing/presets.h"
#include "models/testing/random_checkpoint.h"
#include "models/testing/random_llava_checkpoint.h"
#include "models/testing/random_muse_checkpoint.h"
#include "models/testing/random_qwen2_audio_checkpoint.h"
#include "src/common/cli.h"
#include "src/common/file_util.h"
#include "src/common/logging.h"

namespace {

namespace fs = std::filesystem;
using muse::models::Arch;
using muse::models::ModelConfig;

struct Flags {
  std::string preset = "tiny";
  std::string arch = "llama";
  uint64_t seed = 0;
  std::optional<std::string> dtype;
  std::string out;
  int shards = 1;
  std::string tokenizer;
  std::optional<int64_t> vocab, hidden, layers, heads, kv_heads, ffn, head_dim, sliding_window;
  std::optional<int64_t> bos;
  std::vector<int64_t> eos;  // empty: the preset's
  bool tie = false;
  std::optional<std::string> rope_scaling;
  std::string vision = "clip";  // LLaVA presets
  bool think_template = false;  // llava-tiny + --tokenizer: the chat template opens <think>
};

void AddFlags(CLI::App& app, Flags* f) {
  using muse::cli::AtLeast;
  app.add_option("--out", f->out, "output directory")->required();
  app.add_option("--preset", f->preset, "model shape (LLaVA presets: below)")
      ->check(CLI::IsMember(
          {"tiny", "small", "llama3-8b-shape", "llava-tiny", "llava-1.5-7b-shape", "muse-tiny"}));
  app.add_option("--arch", f->arch, "decoder architecture")
      ->check(CLI::IsMember({"llama", "mistral", "qwen2"}));
  app.add_option("--seed", f->seed, "weights seed")->check(muse::cli::kUnsigned);
  app.add_option("--dtype", f->dtype, "default: float32; bfloat16 for the *-shape presets")
      ->check(CLI::IsMember({"float32", "bfloat16", "float16"}));
  app.add_option("--shards", f->shards, "write N shards + model.safetensors.index.json")
      ->check(muse::cli::InRange(1, 99999));
  app.add_option("--tokenizer", f->tokenizer,
                 "copy tokenizer.json (+ tokenizer_config.json) from DIR;\n"
                 "the vocab grows to the tokenizer's size if that is larger")
      ->check(CLI::ExistingDirectory);
  app.add_option("--vocab", f->vocab, "vocabulary size")->check(AtLeast<int64_t>(1));
  app.add_option("--hidden", f->hidden, "hidden size")->check(AtLeast<int64_t>(1));
  app.add_option("--layers", f->layers, "decoder layers")->check(AtLeast<int64_t>(1));
  app.add_option("--heads", f->heads, "attention heads")->check(AtLeast<int64_t>(1));
  app.add_option("--kv-heads", f->kv_heads, "key/value heads")->check(AtLeast<int64_t>(1));
  app.add_option("--ffn", f->ffn, "MLP intermediate size")->check(AtLeast<int64_t>(1));
  app.add_option("--head-dim", f->head_dim, "default: hidden / heads")->check(AtLeast<int64_t>(1));
  app.add_option("--bos", f->bos, "BOS token id")->check(AtLeast<int64_t>(0));
  app.add_option("--eos", f->eos,
                 "EOS token ids, comma-separated (preset ids that do not fit\n"
                 "a smaller --vocab become bos 1, eos 2)")
      ->delimiter(',')
      ->allow_extra_args(false)
      ->check(AtLeast<int64_t>(0));
  app.add_flag("--tie", f->tie, "tie lm_head to the embedding");
  app.add_flag(
      "--think-template", f->think_template,
      "llava-tiny / muse-tiny with --tokenizer: the chat template opens a <think> block at "
      "the start "
      "of the assistant turn (enable_thinking=false: an empty <think></think> block)");
  app.add_option("--rope-scaling", f->rope_scaling,
                 "default: llama3 for --arch llama presets, none otherwise")
      ->check(CLI::IsMember({"llama3", "none"}));
  app.add_option("--sliding-window", f->sliding_window, "mistral, qwen2")
      ->check(AtLeast<int64_t>(1));
  app.add_option("--vision", f->vision, "tower of llava-tiny (siglip: image 30, patch 6)")
      ->check(CLI::IsMember({"clip", "siglip"}));
  app.footer(R"(Decoder presets: tiny (Llama 3 tokenizer vocab, 2 layers), small (~124M parameters),
llama3-8b-shape (Meta-Llama-3-8B dimensions, 16 GB in bfloat16).
LLaVA presets (LlavaForConditionalGeneration, HF layout, + preprocessor_config.json):
  llava-tiny          CLIP-like tower (image 32, patch 8, hidden 32, 2 layers) + the tiny
                      decoder, which the decoder flags shape; with --tokenizer, "<image>" is
                      added as the next token id and a Llama 3 chat template renders image
                      parts as it
  llava-1.5-7b-shape  CLIP ViT-L/14-336 + Llama-2-7B dimensions (bfloat16, ~14 GB)
Tri-modal preset (MuseForConditionalGeneration, docs/ARCHITECTURE.md):
  muse-tiny           llava-tiny's tower + a Qwen2-Audio tower (d_model 64, 2 layers, 80 mels,
                      30 s chunks) over the tiny decoder; with --tokenizer, <image>,
                      <|audio_bos|>, <|AUDIO|>, <|audio_eos|> are added and the chat template
                      renders image and audio parts (the default model, scripts/setup.sh))");
}

// Number of token ids tokenizer.json defines: max id + 1 over the model vocab and added tokens.
absl::StatusOr<int64_t> TokenizerVocabSize(const std::string& path) {
  ASSIGN_OR_RETURN(const nlohmann::json j, muse::ParseJsonFile(path));
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  int64_t size = 0;
  if (j.contains("model") && j["model"].is_object() && j["model"].contains("vocab")) {
    const auto& vocab = j["model"]["vocab"];
    if (vocab.is_object()) {  // BPE / WordPiece: token -> id
      for (const auto& id : vocab) {
        if (id.is_number_integer()) size = std::max<int64_t>(size, id.get<int64_t>() + 1);
      }
    } else if (vocab.is_array()) {  // Unigram: [[piece, score], ...]
      size = static_cast<int64_t>(vocab.size());
    }
  }
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (const auto& t : j["added_tokens"]) {
      if (t.is_object() && t.contains("id") && t["id"].is_number_integer()) {
        size = std::max<int64_t>(size, t["id"].get<int64_t>() + 1);
      }
    }
  }
  if (size == 0) return absl::InvalidArgumentError(absl::StrCat(path, ": no vocabulary found"));
  return size;
}

absl::Status CopyTokenizer(const std::string& from, const std::string& to) {
  std::error_code ec;
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    const fs::path src = fs::path(from) / name;
    if (!fs::exists(src)) {
      if (std::string(name) == "tokenizer.json") {
        return absl::NotFoundError(absl::StrCat(src.string(), " does not exist"));
      }
      std::fprintf(stderr, "note: %s not found, not copied\n", src.c_str());
      continue;
    }
    fs::copy_file(src, fs::path(to) / name, fs::copy_options::overwrite_existing, ec);
    if (ec) return absl::InternalError(absl::StrCat("copy ", src.string(), ": ", ec.message()));
    std::printf("  %s (copied from %s)\n", (fs::path(to) / name).c_str(), from.c_str());
  }
  return absl::OkStatus();
}

constexpr const char* kImageToken = "<image>";
// Qwen2-Audio's audio markers: the placeholder <|AUDIO|> between begin / end tokens.
constexpr const char* kAudioBos = "<|audio_bos|>";
constexpr const char* kAudioToken = "<|AUDIO|>";
constexpr const char* kAudioEos = "<|audio_eos|>";

// The Llama 3 chat template with list content: text parts as text, image parts as "<image>"
// (and, with audio, audio parts as Qwen2-Audio renders them).
// String content renders exactly as Llama 3's (trim, bos_token, headers, generation prompt).
std::string Llama3PartsTemplate(bool audio) {
  return absl::StrCat(
      "{% set loop_messages = messages %}{% for message in loop_messages %}"
      "{% if loop.index0 == 0 %}{{ bos_token }}{% endif %}"
      "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
      "{% if message['content'] is string %}{{ message['content'] | trim }}"
      "{% else %}{% for part in message['content'] %}"
      "{% if part['type'] == 'image' %}{{ '<image>' }}",
      audio ? "{% elif part['type'] == 'audio' %}{{ '<|audio_bos|><|AUDIO|><|audio_eos|>' }}" : "",
      "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
      "{% endfor %}{% endif %}{{ '<|eot_id|>' }}{% endfor %}"
      "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}");
}

// --think-template (issue #18): the same, and the assistant turn opens a reasoning block as
// Qwen3's template does with its enable_thinking switch: "<think>\n" (the output begins inside the
// block) unless enable_thinking is false, which writes an empty block (the output is content).
constexpr const char* kThinkTail =
    "{% if enable_thinking is defined and not enable_thinking %}"
    "{{ '<think>\n\n</think>\n\n' }}{% else %}{{ '<think>\n' }}{% endif %}";

struct AddedToken {
  std::string content;
  int64_t id = -1;
  bool exists = false;  // already in the tokenizer
};

// Ids of `contents` in DIR/tokenizer.json: an existing added token keeps its id, the others get
// the next free ids in order.
absl::StatusOr<std::vector<AddedToken>> AddedTokenIds(const std::string& tokenizer_dir,
                                                      const std::vector<std::string>& contents) {
  ASSIGN_OR_RETURN(const nlohmann::json j, muse::ParseJsonFile(tokenizer_dir + "/tokenizer.json"));
  ASSIGN_OR_RETURN(int64_t next, TokenizerVocabSize(tokenizer_dir + "/tokenizer.json"));
  std::vector<AddedToken> out;
  for (const std::string& c : contents) {
    AddedToken t{c};
    if (j.is_object() && j.contains("added_tokens") && j["added_tokens"].is_array()) {
      for (const auto& e : j["added_tokens"]) {
        if (e.is_object() && e.value("content", "") == c && e.contains("id")) {
          t.id = e["id"].get<int64_t>();
          t.exists = true;
        }
      }
    }
    if (!t.exists) t.id = next++;
    out.push_back(t);
  }
  return out;
}

absl::Status WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

// Copies the tokenizer with `tokens` as added special tokens (as the llava-llama-3 conversions
// add "<image>") and, for a Llama 3 style chat template, a template that renders image (and with
// `audio`, audio) content parts as their placeholders.
absl::Status CopyTokenizerWithAddedTokens(const std::string& from, const std::string& to,
                                          const std::vector<AddedToken>& tokens, bool audio,
                                          bool think_template) {
  using ojson = nlohmann::ordered_json;
  ASSIGN_OR_RETURN(std::string text, muse::ReadFile(from + "/tokenizer.json"));
  // Splice the entries into the "added_tokens" array as text: re-serialising keeps the file as is
  // (and an ordered parse of a 128k-entry vocab is quadratic).
  std::string entries;
  for (const AddedToken& t : tokens) {
    if (t.exists) continue;
    const ojson entry = {{"id", t.id},      {"content", t.content}, {"single_word", false},
                         {"lstrip", false}, {"rstrip", false},      {"normalized", false},
                         {"special", true}};
    entries += (entries.empty() ? "" : ",") + entry.dump();
  }
  if (!entries.empty()) {
    const size_t key = text.find("\"added_tokens\"");
    const size_t open = key == std::string::npos ? key : text.find('[', key);
    if (open == std::string::npos)
      return absl::InvalidArgumentError(from + "/tokenizer.json: no added_tokens");
    size_t i = open + 1, depth = 1;
    bool in_string = false, any = false;
    for (; i < text.size() && depth > 0; ++i) {
      const char c = text[i];
      if (in_string) {
        if (c == '\\') {
          ++i;
        } else if (c == '"') {
          in_string = false;
        }
        continue;
      }
      if (c == '"') {
        in_string = true;
      } else if (c == '[' || c == '{') {
        ++depth;
      } else if (c == ']' || c == '}') {
        --depth;
      }
      if (depth > 0 && c != ' ' && c != '\n' && c != '\t' && c != '\r') any = true;
    }
    if (depth != 0)
      return absl::InvalidArgumentError(from + "/tokenizer.json: unterminated added_tokens");
    text.insert(i - 1, (any ? "," : "") + entries);
  }
  RETURN_IF_ERROR(WriteText(fs::path(to) / "tokenizer.json", text));
  std::string added;
  for (const AddedToken& t : tokens) absl::StrAppend(&added, " + ", t.content, " = ", t.id);
  std::printf("  %s (from %s%s)\n", (fs::path(to) / "tokenizer.json").c_str(), from.c_str(),
              added.c_str());
  const fs::path tc_path = fs::path(from) / "tokenizer_config.json";
  if (!fs::exists(tc_path)) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::string tc_text, muse::ReadFile(tc_path.string()));
  ojson tc = ojson::parse(tc_text, nullptr, /*allow_exceptions=*/false);
  if (tc.is_discarded() || !tc.is_object())
    return absl::InvalidArgumentError(tc_path.string() + ": not JSON");
  for (const AddedToken& t : tokens) {
    tc["added_tokens_decoder"][std::to_string(t.id)] = {{"content", t.content}, {"lstrip", false},
                                                        {"normalized", false},  {"rstrip", false},
                                                        {"single_word", false}, {"special", true}};
  }
  if (tc.contains("chat_template") && tc["chat_template"].is_string() &&
      tc["chat_template"].get<std::string>().find("<|start_header_id|>") != std::string::npos) {
    tc["chat_template"] = think_template ? absl::StrCat(Llama3PartsTemplate(audio), kThinkTail)
                                         : Llama3PartsTemplate(audio);
  } else if (think_template) {
    return absl::InvalidArgumentError(
        "--think-template: the tokenizer's chat template is not Llama 3 style");
  } else {
    std::fprintf(stderr,
                 "note: chat template is not Llama 3 style; left as is (no image/audio parts)\n");
  }
  RETURN_IF_ERROR(WriteText(fs::path(to) / "tokenizer_config.json", tc.dump(2)));
  std::printf("  %s (+ %s chat template)\n", (fs::path(to) / "tokenizer_config.json").c_str(),
              audio ? "image + audio" : "image");
  return absl::OkStatus();
}

int64_t CountParams(const std::vector<std::pair<std::string, std::vector<int64_t>>>& list) {
  int64_t n = 0;
  for (const auto& [name, shape] : list) {
    int64_t k = 1;
    for (int64_t d : shape) k *= d;
    n += k;
  }
  return n;
}

// muse-tiny: llava-tiny's vision side and qwen2-audio-tiny's audio side over the tiny decoder
// (which the decoder flags shape). With --tokenizer, <image>, <|audio_bos|>, <|AUDIO|> and
// <|audio_eos|> are the next ids and the chat template renders image and audio parts.
absl::Status RunMuse(const Flags& f, const ModelConfig& decoder,
                     const muse::models::RandomCheckpointOptions& opts) {
  namespace mc = muse::models::muse_composite;
  if (f.vision != "clip") return absl::InvalidArgumentError("--vision: muse-tiny has a clip tower");
  ModelConfig text = decoder;
  std::vector<AddedToken> tokens;
  if (!f.tokenizer.empty()) {
    ASSIGN_OR_RETURN(tokens,
                     AddedTokenIds(f.tokenizer, {kImageToken, kAudioBos, kAudioToken, kAudioEos}));
    for (const AddedToken& t : tokens) text.vocab_size = std::max(text.vocab_size, t.id + 1);
  }
  ASSIGN_OR_RETURN(mc::MuseConfig mc_config, mc::MusePreset(f.preset, text));
  if (!tokens.empty()) {
    mc_config.vision.image_token_index = tokens[0].id;
    mc_config.audio.audio_token_index = tokens[2].id;
  }
  const auto& lc = mc_config.vision;
  const auto& ac = mc_config.audio;
  std::printf("muse-make-model: %s preset=%s (text + image + audio) dtype=%s seed=%llu\n",
              f.out.c_str(), f.preset.c_str(), muse::models::TorchDTypeName(opts.dtype),
              static_cast<unsigned long long>(f.seed));
  std::printf(
      "  vision: image=%lld patch=%lld hidden=%lld layers=%lld, image tokens=%lld, "
      "params=%.2fM\n",
      (long long)lc.vision.image_size, (long long)lc.vision.patch_size,
      (long long)lc.vision.hidden_size, (long long)lc.vision.num_hidden_layers,
      (long long)lc.num_image_tokens(),
      (CountParams(muse::models::llava::ExpectedVisionTensors(lc, true)) +
       CountParams(muse::models::llava::ExpectedProjectorTensors(lc))) /
          1e6);
  std::printf(
      "  audio: d_model=%lld layers=%lld heads=%lld mels=%lld chunk=%llds, tokens per chunk=%lld, "
      "params=%.2fM\n",
      (long long)ac.audio.d_model, (long long)ac.audio.encoder_layers,
      (long long)ac.audio.encoder_attention_heads, (long long)ac.audio.num_mel_bins,
      (long long)(ac.audio.input_frames() / 100), (long long)ac.max_audio_tokens(),
      (CountParams(muse::models::qwen2_audio::ExpectedAudioTensors(ac)) +
       CountParams(muse::models::qwen2_audio::ExpectedAudioProjectorTensors(ac))) /
          1e6);
  std::printf(
      "  text: vocab=%lld hidden=%lld layers=%lld, image_token_index=%lld audio_token_index=%lld\n",
      (long long)lc.text.vocab_size, (long long)lc.text.hidden_size,
      (long long)lc.text.num_hidden_layers, (long long)lc.image_token_index,
      (long long)ac.audio_token_index);
  std::fflush(stdout);
  if (opts.num_shards != 1)
    return absl::InvalidArgumentError("--shards is not supported for the muse-tiny preset");
  ASSIGN_OR_RETURN(auto files,
                   mc::WriteRandomMuseCheckpoint(f.out, mc_config,
                                                 muse::models::llava::PreprocessorFor(lc), opts));
  for (const auto& file : files) {
    std::printf("  %s (%llu bytes)\n", file.path.c_str(),
                static_cast<unsigned long long>(file.bytes));
  }
  if (!tokens.empty()) {
    RETURN_IF_ERROR(
        CopyTokenizerWithAddedTokens(f.tokenizer, f.out, tokens, /*audio=*/true, f.think_template));
  }
  return absl::OkStatus();
}

// LLaVA presets: the decoder flags shape llava-tiny's decoder; the 7B shape is fixed.
absl::Status RunLlava(const Flags& f, const ModelConfig& decoder,
                      const muse::models::RandomCheckpointOptions& opts) {
  if (f.vision != "clip" && f.vision != "siglip") {
    return absl::InvalidArgumentError(absl::StrCat("--vision: '", f.vision, "' (clip, siglip)"));
  }
  std::string name = f.preset;
  if (f.vision == "siglip") {
    if (name != "llava-tiny")
      return absl::InvalidArgumentError("--vision siglip needs --preset llava-tiny");
    name = "llava-tiny-siglip";
  }
  ModelConfig text = decoder;
  int64_t image_id = -1;
  if (!f.tokenizer.empty() && name != "llava-1.5-7b-shape") {
    // "<image>" gets the next id after the tokenizer's vocabulary; the decoder's vocab grows to it.
    ASSIGN_OR_RETURN(auto ids, AddedTokenIds(f.tokenizer, {kImageToken}));
    image_id = ids[0].id;
    text.vocab_size = std::max(text.vocab_size, image_id + 1);
  }
  ASSIGN_OR_RETURN(auto lc, muse::models::llava::LlavaPreset(name, text));
  if (image_id >= 0) lc.image_token_index = image_id;
  int64_t vision_params = 0;
  for (const auto& list : {muse::models::llava::ExpectedVisionTensors(lc, true),
                           muse::models::llava::ExpectedProjectorTensors(lc)}) {
    for (const auto& [n, shape] : list) {
      int64_t k = 1;
      for (int64_t d : shape) k *= d;
      vision_params += k;
    }
  }
  std::printf("muse-make-model: %s preset=%s (LLaVA, %s tower) dtype=%s seed=%llu\n", f.out.c_str(),
              f.preset.c_str(), f.vision.c_str(), muse::models::TorchDTypeName(opts.dtype),
              static_cast<unsigned long long>(f.seed));
  std::printf(
      "  vision: image=%lld patch=%lld hidden=%lld layers=%lld heads=%lld mlp=%lld, "
      "image tokens=%lld, tower+projector params=%.2fM\n",
      (long long)lc.vision.image_size, (long long)lc.vision.patch_size,
      (long long)lc.vision.hidden_size, (long long)lc.vision.num_hidden_layers,
      (long long)lc.vision.num_attention_heads, (long long)lc.vision.intermediate_size,
      (long long)lc.num_image_tokens(), vision_params / 1e6);
  std::printf(
      "  text: vocab=%lld hidden=%lld layers=%lld heads=%lld kv_heads=%lld ffn=%lld, "
      "image_token_index=%lld\n",
      (long long)lc.text.vocab_size, (long long)lc.text.hidden_size,
      (long long)lc.text.num_hidden_layers, (long long)lc.text.num_attention_heads,
      (long long)lc.text.num_key_value_heads, (long long)lc.text.intermediate_size,
      (long long)lc.image_token_index);
  std::fflush(stdout);
  if (opts.num_shards != 1)
    return absl::InvalidArgumentError("--shards is not supported for LLaVA presets");
  ASSIGN_OR_RETURN(auto files, muse::models::llava::WriteRandomLlavaCheckpoint(
                                   f.out, lc, muse::models::llava::PreprocessorFor(lc), opts));
  for (const auto& file : files) {
    std::printf("  %s (%llu bytes)\n", file.path.c_str(),
                static_cast<unsigned long long>(file.bytes));
  }
  if (image_id >= 0) {
    ASSIGN_OR_RETURN(auto ids, AddedTokenIds(f.tokenizer, {kImageToken}));
    RETURN_IF_ERROR(
        CopyTokenizerWithAddedTokens(f.tokenizer, f.out, ids, /*audio=*/false, f.think_template));
  } else if (!f.tokenizer.empty()) {
    RETURN_IF_ERROR(CopyTokenizer(f.tokenizer, f.out));
  }
  return absl::OkStatus();
}

absl::Status Run(const Flags& f) {
  const bool llava = f.preset.rfind("llava", 0) == 0;
  const bool muse_tiny = f.preset == "muse-tiny";
  ASSIGN_OR_RETURN(ModelConfig c,
                   muse::models::DecoderPreset(llava || muse_tiny ? "tiny" : f.preset));
  if (f.arch == "llama") {
    c.arch = Arch::kLlama;
    c.architecture = "LlamaForCausalLM";
  } else if (f.arch == "mistral") {
    c.arch = Arch::kMistral;
    c.architecture = "MistralForCausalLM";
  } else if (f.arch == "qwen2") {
    c.arch = Arch::kQwen2;
    c.architecture = "Qwen2ForCausalLM";
    c.attention_bias = true;  // Qwen2 always has q/k/v biases
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown --arch '", f.arch, "' (llama, mistral, qwen2)"));
  }
  // llama3 RoPE scaling is a Llama 3 thing; other architectures get it only when asked for.
  if (c.arch != Arch::kLlama) c.rope_scaling = {};
  if (f.vocab) c.vocab_size = *f.vocab;
  if (f.hidden) c.hidden_size = *f.hidden;
  if (f.layers) c.num_hidden_layers = *f.layers;
  if (f.heads) c.num_attention_heads = *f.heads;
  if (f.kv_heads) c.num_key_value_heads = *f.kv_heads;
  if (f.ffn) c.intermediate_size = *f.ffn;
  if (f.sliding_window) {
    if (c.arch == Arch::kLlama)
      return absl::InvalidArgumentError("--sliding-window needs mistral or qwen2");
    c.sliding_window = *f.sliding_window;
  }
  if (f.tie) c.tie_word_embeddings = true;
  if (f.rope_scaling) {
    if (*f.rope_scaling == "llama3") {
      c.rope_scaling = {"llama3", 8.0, 1.0, 4.0, 8192};
    } else if (*f.rope_scaling == "none") {
      c.rope_scaling = {};
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--rope-scaling: '", *f.rope_scaling, "' (llama3, none)"));
    }
  }
  if (f.head_dim) {
    c.head_dim = *f.head_dim;
  } else if (c.num_attention_heads > 0) {
    c.head_dim = c.hidden_size / c.num_attention_heads;
    if (c.hidden_size % c.num_attention_heads != 0) {
      return absl::InvalidArgumentError("hidden size is not divisible by heads; pass --head-dim");
    }
  }
  if (!f.tokenizer.empty()) {
    ASSIGN_OR_RETURN(int64_t tok_vocab, TokenizerVocabSize(f.tokenizer + "/tokenizer.json"));
    if (tok_vocab > c.vocab_size) c.vocab_size = tok_vocab;
  }

  bool ids_fit = c.bos_token_id < c.vocab_size;
  for (int64_t id : c.eos_token_ids) ids_fit = ids_fit && id < c.vocab_size;
  if (!ids_fit && !f.bos && f.eos.empty()) {
    std::fprintf(stderr,
                 "note: preset special token ids do not fit vocab %lld; using bos 1, eos 2\n",
                 static_cast<long long>(c.vocab_size));
    c.bos_token_id = 1;
    c.eos_token_ids = {2};
  }
  if (f.bos) c.bos_token_id = *f.bos;
  if (!f.eos.empty()) c.eos_token_ids = f.eos;

  muse::models::RandomCheckpointOptions opts;
  opts.seed = f.seed;
  opts.num_shards = f.shards;
  ASSIGN_OR_RETURN(opts.dtype, muse::models::DTypeFromTorchName(f.dtype.value_or(
                                   f.preset == "llama3-8b-shape" || f.preset == "llava-1.5-7b-shape"
                                       ? "bfloat16"
                                       : "float32")));
  if (f.think_template &&
      ((f.preset != "llava-tiny" && f.preset != "muse-tiny") || f.tokenizer.empty())) {
    return absl::InvalidArgumentError(
        "--think-template needs --preset llava-tiny or muse-tiny and --tokenizer");
  }
  if (muse_tiny) return RunMuse(f, c, opts);
  if (llava) return RunLlava(f, c, opts);
  int64_t params = 0;
  for (const auto& [name, shape] : muse::models::ExpectedDecoderTensors(c)) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    params += n;
  }
  std::printf("muse-make-model: %s preset=%s arch=%s dtype=%s seed=%llu\n", f.out.c_str(),
              f.preset.c_str(), c.architecture.c_str(), muse::models::TorchDTypeName(opts.dtype),
              static_cast<unsigned long long>(f.seed));
  std::printf(
      "  vocab=%lld hidden=%lld layers=%lld heads=%lld kv_heads=%lld head_dim=%lld "
      "ffn=%lld tie=%d rope_scaling=%s params=%lld (%.1fM)\n",
      (long long)c.vocab_size, (long long)c.hidden_size, (long long)c.num_hidden_layers,
      (long long)c.num_attention_heads, (long long)c.num_key_value_heads, (long long)c.head_dim,
      (long long)c.intermediate_size, c.tie_word_embeddings ? 1 : 0,
      c.rope_scaling.type.empty() ? "none" : c.rope_scaling.type.c_str(), (long long)params,
      params / 1e6);
  std::fflush(stdout);  // the 8B shape takes minutes to write; show what is coming first
  ASSIGN_OR_RETURN(auto files, muse::models::WriteRandomCheckpoint(f.out, c, opts));
  for (const auto& file : files) {
    std::printf("  %s (%llu bytes)\n", file.path.c_str(),
                static_cast<unsigned long long>(file.bytes));
  }
  if (!f.tokenizer.empty()) RETURN_IF_ERROR(CopyTokenizer(f.tokenizer, f.out));
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) try {
  std::setvbuf(stderr, nullptr, _IONBF, 0);
  muse::InitLogging("info");
  CLI::App app(
      "Writes a HF model directory (config.json, generation_config.json, model.safetensors "
      "or shards + index) with deterministic random weights.",
      "muse-make-model");
  muse::cli::ConfigureApp(app);
  Flags flags;
  AddFlags(app, &flags);
  if (auto rc = muse::cli::ParseCommandLine(app, argc, argv)) return *rc;
  const absl::Status st = Run(flags);
  std::fflush(stdout);
  if (!st.ok()) {
    std::fprintf(stderr, "muse-make-model: %s\n", std::string(st.message()).c_str());
    return muse::cli::kExitFailure;
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "muse-make-model: %s\n", e.what());
  return 1;
}
