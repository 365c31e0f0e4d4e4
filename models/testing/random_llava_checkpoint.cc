#include "models/testing/random_llava_checkpoint.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "models/checkpoint.h"
#include "models/half.h"
#include "models/llama/llama_weights.h"

namespace muse::models::llava {
namespace {

namespace fs = std::filesystem;

constexpr size_t kChunkElems = size_t{1} << 20;

bool IsLayerNormWeight(const std::string& name) {
  return absl::EndsWith(name, ".weight") &&
         (absl::StrContains(name, "layer_norm") || absl::StrContains(name, "layrnorm") ||
          absl::StrContains(name, "layernorm"));
}

void Encode(const float* in, size_t n, DType dtype, std::vector<uint8_t>* out) {
  out->resize(n * kernels::dtype_size(dtype));
  if (dtype == DType::kFloat32) {
    std::memcpy(out->data(), in, n * sizeof(float));
    return;
  }
  auto* dst = reinterpret_cast<uint16_t*>(out->data());
  for (size_t i = 0; i < n; ++i)
    dst[i] = dtype == DType::kBFloat16 ? FloatToBf16(in[i]) : FloatToF16(in[i]);
}

}  // namespace

std::vector<float> RandomVisionTensorValues(const std::string& name, int64_t numel, uint64_t seed) {
  std::vector<float> v =
      RandomTensorValues(name, numel, seed);  // 0.02 * N(0,1) unless *norm.weight
  if (IsLayerNormWeight(name) && !absl::EndsWith(name, "norm.weight")) {
    for (float& x : v) x = 1.0f + 5.0f * x;
  }
  return v;
}

absl::StatusOr<std::vector<WrittenFile>> WriteRandomLlavaCheckpoint(
    const std::string& dir, const LlavaConfig& config_in,
    const vision::PreprocessorConfig& preprocessor, const RandomCheckpointOptions& options) {
  if (options.dtype != DType::kFloat32 && options.dtype != DType::kBFloat16 &&
      options.dtype != DType::kFloat16) {
    return absl::InvalidArgumentError("random checkpoints are float32, bfloat16 or float16");
  }
  LlavaConfig config = config_in;
  config.text.torch_dtype = TorchDTypeName(options.dtype);
  const std::string config_text = LlavaConfigToJson(config);
  RETURN_IF_ERROR(ParseLlavaConfig(config_text).status());  // what we write must load

  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  fs::remove(dir + "/model.safetensors.index.json", ec);
  std::vector<WrittenFile> written;
  auto add_text = [&](const std::string& name, const std::string& text) -> absl::Status {
    const std::string path = dir + "/" + name;
    RETURN_IF_ERROR(WriteTextFileAtomically(path, text));
    written.push_back({path, text.size()});
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(add_text("config.json", config_text));
  RETURN_IF_ERROR(
      add_text("preprocessor_config.json", vision::PreprocessorConfigToJson(preprocessor)));
  std::string gen = "{\n  \"_from_model_config\": true,\n";
  if (config.text.bos_token_id >= 0)
    gen += absl::StrCat("  \"bos_token_id\": ", config.text.bos_token_id, ",\n");
  if (!config.text.eos_token_ids.empty())
    gen += absl::StrCat("  \"eos_token_id\": ", config.text.eos_token_ids[0], ",\n");
  gen += "  \"transformers_version\": \"4.44.0\"\n}\n";
  RETURN_IF_ERROR(add_text("generation_config.json", gen));

  // name in file -> name whose random stream it uses
  std::vector<std::pair<TensorSpec, std::string>> tensors;
  for (const auto& [name, shape] : ExpectedDecoderTensors(config.text)) {
    tensors.push_back({{kDecoderPrefix + name, options.dtype, shape}, name});
  }
  for (const auto& list :
       {ExpectedVisionTensors(config, /*all=*/true), ExpectedProjectorTensors(config)}) {
    for (const auto& [name, shape] : list) tensors.push_back({{name, options.dtype, shape}, ""});
  }
  std::sort(tensors.begin(), tensors.end(),
            [](const auto& a, const auto& b) { return a.first.name < b.first.name; });
  std::vector<TensorSpec> specs;
  specs.reserve(tensors.size());
  for (const auto& t : tensors) specs.push_back(t.first);
  std::vector<float> values;
  std::vector<uint8_t> bytes;
  const auto produce = [&](size_t i, const ByteSink& sink) -> absl::Status {
    const auto& [spec, stream_name] = tensors[i];
    int64_t numel = 1;
    for (int64_t d : spec.shape) numel *= d;
    // Decoder tensors are generated whole (the generator has no resumable form outside
    // random_checkpoint.cc), so peak memory is one tensor: 0.5 GB for the 7B shape's embedding.
    if (!stream_name.empty()) {
      std::vector<float> all = RandomTensorValues(stream_name, numel, options.seed);
      for (int64_t done = 0; done < numel;) {
        const size_t n = static_cast<size_t>(std::min<int64_t>(kChunkElems, numel - done));
        Encode(all.data() + done, n, spec.dtype, &bytes);
        RETURN_IF_ERROR(sink(bytes.data(), bytes.size()));
        done += n;
      }
      return absl::OkStatus();
    }
    values = RandomVisionTensorValues(spec.name, numel, options.seed);
    Encode(values.data(), values.size(), spec.dtype, &bytes);
    return sink(bytes.data(), bytes.size());
  };
  const std::string path = dir + "/model.safetensors";
  RETURN_IF_ERROR(WriteSafetensorsStreamed(path, specs, produce, {{"format", "pt"}}));
  written.push_back({path, static_cast<uint64_t>(fs::file_size(path, ec))});
  return written;
}

absl::StatusOr<LlavaConfig> LlavaPreset(const std::string& name, const ModelConfig& decoder) {
  LlavaConfig c;
  c.text = decoder;
  if (name == "llava-tiny") {
    c.vision = VisionConfig{VisionArch::kClip, 32, 64, 2, 4, 3, 32, 8, 1e-5, "quick_gelu"};
  } else if (name == "llava-tiny-siglip") {
    c.vision = VisionConfig{VisionArch::kSiglip, 32, 64, 2, 4, 3, 30, 6, 1e-6, "gelu_pytorch_tanh"};
    c.vision_feature_layer = -1;
    c.vision_feature_select_strategy = "full";
  } else if (name == "llava-1.5-7b-shape") {
    c.vision = VisionConfig{VisionArch::kClip, 1024, 4096, 24, 16, 3, 336, 14, 1e-5, "quick_gelu"};
    ModelConfig t;
    t.architecture = "LlamaForCausalLM";
    t.arch = Arch::kLlama;
    t.vocab_size = 32064;
    t.hidden_size = 4096;
    t.intermediate_size = 11008;
    t.num_hidden_layers = 32;
    t.num_attention_heads = 32;
    t.num_key_value_heads = 32;
    t.head_dim = 128;
    t.max_position_embeddings = 4096;
    t.rms_norm_eps = 1e-5;
    t.rope_theta = 10000.0;
    t.bos_token_id = 1;
    t.eos_token_ids = {2};
    c.text = t;
    c.image_token_index = 32000;
    return c;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown LLaVA preset '", name, "' (llava-tiny, llava-tiny-siglip, llava-1.5-7b-shape)"));
  }
  // The tiny decoders' vocabularies are large; the image token is the last id, as llava-hf adds it.
  c.image_token_index = c.text.vocab_size - 1;
  return c;
}

vision::PreprocessorConfig PreprocessorFor(const LlavaConfig& c) {
  const int s = static_cast<int>(c.vision.image_size);
  if (c.vision.arch == VisionArch::kSiglip) {
    vision::PreprocessorConfig p = vision::DefaultPreprocessorConfig("SiglipImageProcessor");
    p.resize_height = p.resize_width = s;
    return p;
  }
  vision::PreprocessorConfig p = vision::DefaultPreprocessorConfig("CLIPImageProcessor");
  p.shortest_edge = s;
  p.crop_height = p.crop_width = s;
  return p;
}

}  // namespace muse::models::llava
