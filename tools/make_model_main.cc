// muse-make-model: writes a HF model directory (config.json, generation_config.json,
// model.safetensors or shards + index) with deterministic random weights, for tests and
// benchmarks without downloading a model.
//
//   muse-make-model --preset llava-tiny --tokenizer DIR --out models/muse-tiny
//   muse-make-model --preset small --arch qwen2 --dtype bfloat16 --seed 7 --out /tmp/small
//   muse-make-model --preset llama3-8b-shape --out /data/l3-shape   (16 GB in bfloat16)
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "models/llama/llama_weights.h"
#include "models/testing/presets.h"
#include "models/checkpoint.h"
#include "models/testing/random_llava_checkpoint.h"
#include "models/model_config.h"
#include "models/testing/random_checkpoint.h"

namespace {

namespace fs = std::filesystem;
using muse::models::Arch;
using muse::models::ModelConfig;

constexpr const char* kUsage = R"(usage: muse-make-model --out DIR [options]
  --preset tiny|small|llama3-8b-shape   (default tiny)
  --arch llama|mistral|qwen2            (default llama)
  --seed N                              (default 0)
  --dtype float32|bfloat16|float16      (default float32; bfloat16 for llama3-8b-shape)
  --shards N                            write N shards + model.safetensors.index.json
  --tokenizer DIR                       copy tokenizer.json (+ tokenizer_config.json) from DIR;
                                        vocab grows to the tokenizer's size if that is larger
  --vocab N --hidden N --layers N --heads N --kv-heads N --ffn N --head-dim N
  --bos N --eos N[,N...]                special token ids (when the preset's ids do not fit a
                                        smaller --vocab they become 1 and 2)
  --tie                                 tie lm_head to the embedding
  --rope-scaling llama3|none            (presets use llama3 scaling only for --arch llama)
  --sliding-window N                    (mistral, qwen2)
LLaVA (LlavaForConditionalGeneration, HF layout, + preprocessor_config.json):
  --preset llava-tiny                   CLIP-like tower (image 32, patch 8, hidden 32, 2 layers)
                                        + the tiny decoder (decoder flags apply); with
                                        --tokenizer, "<image>" is added as the next token id
                                        and a Llama 3 chat template renders image parts as it
  --preset llava-1.5-7b-shape           CLIP ViT-L/14-336 + Llama-2-7B dims (bfloat16, ~14 GB)
  --vision clip|siglip                  tower of llava-tiny (siglip: image 30, patch 6)
)";

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
  std::optional<std::vector<int64_t>> eos;
  bool tie = false;
  std::optional<std::string> rope_scaling;
  std::string vision = "clip";  // LLaVA presets
};

absl::StatusOr<int64_t> ParseInt(const std::string& flag, const std::string& value) {
  int64_t v;
  if (!absl::SimpleAtoi(value, &v)) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": not an integer: '", value, "'"));
  }
  return v;
}

absl::StatusOr<Flags> ParseFlags(int argc, char** argv) {
  Flags f;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i];
    std::optional<std::string> inline_value;
    if (const size_t eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    }
    if (flag == "--help" || flag == "-h") return absl::CancelledError("help");
    if (flag == "--tie") {
      f.tie = true;
      continue;
    }
    std::string value;
    if (inline_value) {
      value = *inline_value;
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat(flag, " needs a value"));
    }
    std::optional<int64_t>* int_target = nullptr;
    if (flag == "--preset") f.preset = value;
    else if (flag == "--arch") f.arch = value;
    else if (flag == "--vision") f.vision = value;
    else if (flag == "--dtype") f.dtype = value;
    else if (flag == "--out") f.out = value;
    else if (flag == "--tokenizer") f.tokenizer = value;
    else if (flag == "--rope-scaling") f.rope_scaling = value;
    else if (flag == "--seed") {
      if (!absl::SimpleAtoi(value, &f.seed)) {
        return absl::InvalidArgumentError(absl::StrCat("--seed: not an unsigned integer: '", value, "'"));
      }
    } else if (flag == "--shards") {
      ASSIGN_OR_RETURN(int64_t n, ParseInt(flag, value));
      if (n < 1 || n > 99999) return absl::InvalidArgumentError("--shards must be in [1, 99999]");
      f.shards = static_cast<int>(n);
    }
    else if (flag == "--bos") int_target = &f.bos;
    else if (flag == "--eos") {
      f.eos.emplace();
      for (const auto& part : absl::StrSplit(value, ',')) {
        ASSIGN_OR_RETURN(int64_t id, ParseInt(flag, std::string(part)));
        f.eos->push_back(id);
      }
    }
    else if (flag == "--vocab") int_target = &f.vocab;
    else if (flag == "--hidden") int_target = &f.hidden;
    else if (flag == "--layers") int_target = &f.layers;
    else if (flag == "--heads") int_target = &f.heads;
    else if (flag == "--kv-heads") int_target = &f.kv_heads;
    else if (flag == "--ffn") int_target = &f.ffn;
    else if (flag == "--head-dim") int_target = &f.head_dim;
    else if (flag == "--sliding-window") int_target = &f.sliding_window;
    else return absl::InvalidArgumentError(absl::StrCat("unknown flag '", flag, "'"));
    if (int_target != nullptr) {
      ASSIGN_OR_RETURN(int64_t v, ParseInt(flag, value));
      *int_target = v;
    }
  }
  if (f.out.empty()) return absl::InvalidArgumentError("--out DIR is required");
  return f;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Number of token ids tokenizer.json defines: max id + 1 over the model vocab and added tokens.
absl::StatusOr<int64_t> TokenizerVocabSize(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
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

// The Llama 3 chat template with list content: text parts as text, image parts as "<image>".
// String content renders exactly as Llama 3's (trim, bos_token, headers, generation prompt).
constexpr const char* kLlama3ImageTemplate =
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% if loop.index0 == 0 %}{{ bos_token }}{% endif %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% if message['content'] is string %}{{ message['content'] | trim }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|eot_id|>' }}{% endfor %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}";

// Id of "<image>" in DIR/tokenizer.json: its existing added token, else the next free id.
absl::StatusOr<int64_t> ImageTokenId(const std::string& tokenizer_dir) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(tokenizer_dir + "/tokenizer.json"));
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (const auto& t : j["added_tokens"]) {
      if (t.is_object() && t.value("content", "") == kImageToken && t.contains("id")) return t["id"].get<int64_t>();
    }
  }
  return TokenizerVocabSize(tokenizer_dir + "/tokenizer.json");
}

absl::Status WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

// Copies the tokenizer with "<image>" as an added special token (id `image_id`, as the
// llava-llama-3 conversions add it) and, for a Llama 3 style chat template, a template that
// renders image content parts as "<image>".
absl::Status CopyTokenizerWithImageToken(const std::string& from, const std::string& to, int64_t image_id) {
  using ojson = nlohmann::ordered_json;
  ASSIGN_OR_RETURN(std::string text, ReadFile(from + "/tokenizer.json"));
  // Splice the entry into the "added_tokens" array as text: re-serialising keeps the file as is
  // (and an ordered parse of a 128k-entry vocab is quadratic).
  ASSIGN_OR_RETURN(const int64_t vocab, TokenizerVocabSize(from + "/tokenizer.json"));
  if (image_id >= vocab) {  // else ImageTokenId found "<image>" already there
    const size_t key = text.find("\"added_tokens\"");
    const size_t open = key == std::string::npos ? key : text.find('[', key);
    if (open == std::string::npos) return absl::InvalidArgumentError(from + "/tokenizer.json: no added_tokens");
    size_t i = open + 1, depth = 1;
    bool in_string = false, any = false;
    for (; i < text.size() && depth > 0; ++i) {
      const char c = text[i];
      if (in_string) {
        if (c == '\\') ++i;
        else if (c == '"') in_string = false;
        continue;
      }
      if (c == '"') in_string = true;
      else if (c == '[' || c == '{') ++depth;
      else if (c == ']' || c == '}') --depth;
      if (depth > 0 && c != ' ' && c != '\n' && c != '\t' && c != '\r') any = true;
    }
    if (depth != 0) return absl::InvalidArgumentError(from + "/tokenizer.json: unterminated added_tokens");
    const ojson entry = {{"id", image_id}, {"content", kImageToken}, {"single_word", false},
                         {"lstrip", false}, {"rstrip", false}, {"normalized", false}, {"special", true}};
    text.insert(i - 1, (any ? "," : "") + entry.dump());
  }
  RETURN_IF_ERROR(WriteText(fs::path(to) / "tokenizer.json", text));
  std::printf("  %s (from %s, + %s = %lld)\n", (fs::path(to) / "tokenizer.json").c_str(), from.c_str(),
              kImageToken, static_cast<long long>(image_id));
  const fs::path tc_path = fs::path(from) / "tokenizer_config.json";
  if (!fs::exists(tc_path)) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::string tc_text, ReadFile(tc_path.string()));
  ojson tc = ojson::parse(tc_text, nullptr, /*allow_exceptions=*/false);
  if (tc.is_discarded() || !tc.is_object()) return absl::InvalidArgumentError(tc_path.string() + ": not JSON");
  tc["added_tokens_decoder"][std::to_string(image_id)] = {
      {"content", kImageToken}, {"lstrip", false}, {"normalized", false}, {"rstrip", false},
      {"single_word", false}, {"special", true}};
  if (tc.contains("chat_template") && tc["chat_template"].is_string() &&
      tc["chat_template"].get<std::string>().find("<|start_header_id|>") != std::string::npos) {
    tc["chat_template"] = kLlama3ImageTemplate;
  } else {
    std::fprintf(stderr, "note: chat template is not Llama 3 style; left as is (no image parts)\n");
  }
  RETURN_IF_ERROR(WriteText(fs::path(to) / "tokenizer_config.json", tc.dump(2)));
  std::printf("  %s (+ image chat template)\n", (fs::path(to) / "tokenizer_config.json").c_str());
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
    if (name != "llava-tiny") return absl::InvalidArgumentError("--vision siglip needs --preset llava-tiny");
    name = "llava-tiny-siglip";
  }
  ModelConfig text = decoder;
  int64_t image_id = -1;
  if (!f.tokenizer.empty() && name != "llava-1.5-7b-shape") {
    // "<image>" gets the next id after the tokenizer's vocabulary; the decoder's vocab grows to it.
    ASSIGN_OR_RETURN(image_id, ImageTokenId(f.tokenizer));
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
  std::printf("  vision: image=%lld patch=%lld hidden=%lld layers=%lld heads=%lld mlp=%lld, "
              "image tokens=%lld, tower+projector params=%.2fM\n",
              (long long)lc.vision.image_size, (long long)lc.vision.patch_size,
              (long long)lc.vision.hidden_size, (long long)lc.vision.num_hidden_layers,
              (long long)lc.vision.num_attention_heads, (long long)lc.vision.intermediate_size,
              (long long)lc.num_image_tokens(), vision_params / 1e6);
  std::printf("  text: vocab=%lld hidden=%lld layers=%lld heads=%lld kv_heads=%lld ffn=%lld, "
              "image_token_index=%lld\n",
              (long long)lc.text.vocab_size, (long long)lc.text.hidden_size,
              (long long)lc.text.num_hidden_layers, (long long)lc.text.num_attention_heads,
              (long long)lc.text.num_key_value_heads, (long long)lc.text.intermediate_size,
              (long long)lc.image_token_index);
  std::fflush(stdout);
  if (opts.num_shards != 1) return absl::InvalidArgumentError("--shards is not supported for LLaVA presets");
  ASSIGN_OR_RETURN(auto files, muse::models::llava::WriteRandomLlavaCheckpoint(
                                   f.out, lc, muse::models::llava::PreprocessorFor(lc), opts));
  for (const auto& file : files) {
    std::printf("  %s (%llu bytes)\n", file.path.c_str(), static_cast<unsigned long long>(file.bytes));
  }
  if (image_id >= 0) {
    RETURN_IF_ERROR(CopyTokenizerWithImageToken(f.tokenizer, f.out, image_id));
  } else if (!f.tokenizer.empty()) {
    RETURN_IF_ERROR(CopyTokenizer(f.tokenizer, f.out));
  }
  return absl::OkStatus();
}

absl::Status Run(const Flags& f) {
  const bool llava = f.preset.rfind("llava", 0) == 0;
  ASSIGN_OR_RETURN(ModelConfig c, muse::models::DecoderPreset(llava ? "tiny" : f.preset));
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
    return absl::InvalidArgumentError(absl::StrCat("unknown --arch '", f.arch,
                                                   "' (llama, mistral, qwen2)"));
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
    if (c.arch == Arch::kLlama) return absl::InvalidArgumentError("--sliding-window needs mistral or qwen2");
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
  if (!ids_fit && !f.bos && !f.eos) {
    std::printf("note: preset special token ids do not fit vocab %lld; using bos 1, eos 2\n",
                static_cast<long long>(c.vocab_size));
    c.bos_token_id = 1;
    c.eos_token_ids = {2};
  }
  if (f.bos) c.bos_token_id = *f.bos;
  if (f.eos) c.eos_token_ids = *f.eos;

  muse::models::RandomCheckpointOptions opts;
  opts.seed = f.seed;
  opts.num_shards = f.shards;
  ASSIGN_OR_RETURN(opts.dtype, muse::models::DTypeFromTorchName(
                                   f.dtype.value_or(f.preset == "llama3-8b-shape" ||
                                                            f.preset == "llava-1.5-7b-shape"
                                                        ? "bfloat16"
                                                        : "float32")));
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
  std::printf("  vocab=%lld hidden=%lld layers=%lld heads=%lld kv_heads=%lld head_dim=%lld "
              "ffn=%lld tie=%d rope_scaling=%s params=%lld (%.1fM)\n",
              (long long)c.vocab_size, (long long)c.hidden_size, (long long)c.num_hidden_layers,
              (long long)c.num_attention_heads, (long long)c.num_key_value_heads,
              (long long)c.head_dim, (long long)c.intermediate_size, c.tie_word_embeddings ? 1 : 0,
              c.rope_scaling.type.empty() ? "none" : c.rope_scaling.type.c_str(), (long long)params,
              params / 1e6);
  std::fflush(stdout);  // the 8B shape takes minutes to write; show what is coming first
  ASSIGN_OR_RETURN(auto files, muse::models::WriteRandomCheckpoint(f.out, c, opts));
  for (const auto& file : files) {
    std::printf("  %s (%llu bytes)\n", file.path.c_str(), static_cast<unsigned long long>(file.bytes));
  }
  if (!f.tokenizer.empty()) RETURN_IF_ERROR(CopyTokenizer(f.tokenizer, f.out));
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stderr, nullptr, _IONBF, 0);
  auto flags = ParseFlags(argc, argv);
  if (!flags.ok()) {
    if (absl::IsCancelled(flags.status())) {
      std::fputs(kUsage, stdout);
      return 0;
    }
    std::fprintf(stderr, "muse-make-model: %s\n%s", std::string(flags.status().message()).c_str(),
                 kUsage);
    return 2;
  }
  const absl::Status st = Run(*flags);
  std::fflush(stdout);
  if (!st.ok()) {
    std::fprintf(stderr, "muse-make-model: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  return 0;
}
