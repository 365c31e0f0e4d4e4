#include "models/testing/random_qwen2_audio_checkpoint.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "models/half.h"
#include "models/llama/llama_weights.h"

namespace muse::models::qwen2_audio {
namespace {

namespace fs = std::filesystem;

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

std::vector<float> RandomAudioTensorValues(const std::string& name, int64_t numel, uint64_t seed) {
  std::vector<float> v = RandomTensorValues(name, numel, seed);
  if (!absl::EndsWith(name, "norm.weight")) {
    for (float& x : v) x *= 10.0f;
  }
  return v;
}

std::string WhisperPreprocessorJson(const Qwen2AudioConfig& c) {
  nlohmann::json j;
  j["feature_extractor_type"] = "WhisperFeatureExtractor";
  j["feature_size"] = c.audio.num_mel_bins;
  j["sampling_rate"] = 16000;
  j["hop_length"] = 160;
  j["n_fft"] = 400;
  j["chunk_length"] = c.audio.input_frames() * 160 / 16000;
  j["n_samples"] = c.audio.input_frames() * 160;
  j["nb_max_frames"] = c.audio.input_frames();
  j["padding_side"] = "right";
  j["padding_value"] = 0.0;
  j["return_attention_mask"] = true;
  j["processor_class"] = "Qwen2AudioProcessor";
  return j.dump(2) + "\n";
}

absl::StatusOr<std::vector<WrittenFile>> WriteRandomQwen2AudioCheckpoint(
    const std::string& dir, const Qwen2AudioConfig& config_in,
    const RandomCheckpointOptions& options) {
  if (options.dtype != DType::kFloat32 && options.dtype != DType::kBFloat16 &&
      options.dtype != DType::kFloat16) {
    return absl::InvalidArgumentError("random checkpoints are float32, bfloat16 or float16");
  }
  Qwen2AudioConfig config = config_in;
  config.text.torch_dtype = TorchDTypeName(options.dtype);
  const std::string config_text = Qwen2AudioConfigToJson(config);
  RETURN_IF_ERROR(ParseQwen2AudioConfig(config_text).status());  // what we write must load

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
  RETURN_IF_ERROR(add_text("preprocessor_config.json", WhisperPreprocessorJson(config)));
  std::string gen = "{\n  \"_from_model_config\": true,\n";
  if (config.text.bos_token_id >= 0)
    gen += absl::StrCat("  \"bos_token_id\": ", config.text.bos_token_id, ",\n");
  if (!config.text.eos_token_ids.empty())
    gen += absl::StrCat("  \"eos_token_id\": ", config.text.eos_token_ids[0], ",\n");
  gen += "  \"transformers_version\": \"4.45.0\"\n}\n";
  RETURN_IF_ERROR(add_text("generation_config.json", gen));

  // name in file -> name whose random stream it uses ("" = the audio stream of its own name)
  std::vector<std::pair<TensorSpec, std::string>> tensors;
  for (const auto& [name, shape] : ExpectedDecoderTensors(config.text)) {
    tensors.push_back({{kDecoderPrefix + name, options.dtype, shape}, name});
  }
  for (const auto& list : {ExpectedAudioTensors(config), ExpectedAudioProjectorTensors(config)}) {
    for (const auto& [name, shape] : list) tensors.push_back({{name, options.dtype, shape}, ""});
  }
  std::sort(tensors.begin(), tensors.end(),
            [](const auto& a, const auto& b) { return a.first.name < b.first.name; });
  std::vector<TensorSpec> specs;
  specs.reserve(tensors.size());
  for (const auto& t : tensors) specs.push_back(t.first);
  std::vector<uint8_t> bytes;
  const auto produce = [&](size_t i, const ByteSink& sink) -> absl::Status {
    const auto& [spec, stream_name] = tensors[i];
    int64_t numel = 1;
    for (int64_t d : spec.shape) numel *= d;
    // One tensor at a time: peak memory is the largest tensor (the decoder's embedding).
    const std::vector<float> values = stream_name.empty()
                                          ? RandomAudioTensorValues(spec.name, numel, options.seed)
                                          : RandomTensorValues(stream_name, numel, options.seed);
    Encode(values.data(), values.size(), spec.dtype, &bytes);
    return sink(bytes.data(), bytes.size());
  };
  const std::string path = dir + "/model.safetensors";
  RETURN_IF_ERROR(WriteSafetensorsStreamed(path, specs, produce, {{"format", "pt"}}));
  written.push_back({path, static_cast<uint64_t>(fs::file_size(path, ec))});
  return written;
}

absl::StatusOr<Qwen2AudioConfig> Qwen2AudioPreset(const std::string& name,
                                                  const ModelConfig& decoder) {
  Qwen2AudioConfig c;
  if (name == "qwen2-audio-tiny") {
    c.audio = AudioEncoderConfig{64, 2, 4, 128, 80, 1500, "gelu", 1e-5};
    c.text = decoder;
    c.audio_token_index = c.text.vocab_size - 1;
    return c;
  }
  if (name == "qwen2-audio-7b-shape") {  // Qwen/Qwen2-Audio-7B
    c.audio = AudioEncoderConfig{1280, 32, 20, 5120, 128, 1500, "gelu", 1e-5};
    ModelConfig t;
    t.architecture = "Qwen2ForCausalLM";
    t.arch = Arch::kQwen2;
    t.vocab_size = 156032;
    t.hidden_size = 4096;
    t.intermediate_size = 11008;
    t.num_hidden_layers = 32;
    t.num_attention_heads = 32;
    t.num_key_value_heads = 32;
    t.head_dim = 128;
    t.max_position_embeddings = 8192;
    t.rms_norm_eps = 1e-5;
    t.rope_theta = 10000.0;
    t.eos_token_ids = {151643};
    c.text = t;
    c.audio_token_index = 151646;
    return c;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown Qwen2-Audio preset '", name,
                                                 "' (qwen2-audio-tiny, qwen2-audio-7b-shape)"));
}

}  // namespace muse::models::qwen2_audio
