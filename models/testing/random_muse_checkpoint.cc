#include "models/testing/random_muse_checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "models/llama/llama_weights.h"
#include "models/testing/random_llava_checkpoint.h"
#include "models/testing/random_qwen2_audio_checkpoint.h"

namespace muse::models::muse_composite {
namespace {

namespace fs = std::filesystem;

enum class Side { kDecoder, kVision, kAudio };

}  // namespace

absl::StatusOr<std::vector<WrittenFile>> WriteRandomMuseCheckpoint(
    const std::string& dir, const MuseConfig& config_in,
    const vision::PreprocessorConfig& image_preprocessor, const RandomCheckpointOptions& options) {
  if (options.dtype != DType::kFloat32 && options.dtype != DType::kBFloat16 &&
      options.dtype != DType::kFloat16) {
    return absl::InvalidArgumentError("random checkpoints are float32, bfloat16 or float16");
  }
  MuseConfig config = config_in;
  config.vision.text.torch_dtype = TorchDTypeName(options.dtype);
  config.audio.text = config.vision.text;
  config.audio.weight_prefix = qwen2_audio::kMuseAudioPrefix;
  const std::string config_text = MuseConfigToJson(config);
  ASSIGN_OR_RETURN(config, ParseMuseConfig(config_text));  // what we write must load

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
  // One file for both processors: the image keys and the Whisper keys do not overlap.
  nlohmann::json pre = nlohmann::json::parse(vision::PreprocessorConfigToJson(image_preprocessor));
  const nlohmann::json whisper =
      nlohmann::json::parse(qwen2_audio::WhisperPreprocessorJson(config.audio));
  for (const auto& [k, v] : whisper.items()) pre[k] = v;
  pre["processor_class"] = "MuseProcessor";
  RETURN_IF_ERROR(add_text("preprocessor_config.json", pre.dump(2) + "\n"));
  std::string gen = "{\n  \"_from_model_config\": true,\n";
  const ModelConfig& text = config.vision.text;
  if (text.bos_token_id >= 0) gen += absl::StrCat("  \"bos_token_id\": ", text.bos_token_id, ",\n");
  if (!text.eos_token_ids.empty())
    gen += absl::StrCat("  \"eos_token_id\": ", text.eos_token_ids[0], ",\n");
  gen += "  \"transformers_version\": \"4.45.0\"\n}\n";
  RETURN_IF_ERROR(add_text("generation_config.json", gen));

  struct Entry {
    TensorSpec spec;
    std::string stream;  // the name whose random values it gets
    Side side;
  };
  std::vector<Entry> tensors;
  for (const auto& [name, shape] : ExpectedDecoderTensors(text)) {
    tensors.push_back({{llava::kDecoderPrefix + name, options.dtype, shape}, name, Side::kDecoder});
  }
  for (const auto& list : {llava::ExpectedVisionTensors(config.vision, /*all=*/true),
                           llava::ExpectedProjectorTensors(config.vision)}) {
    for (const auto& [name, shape] : list)
      tensors.push_back({{name, options.dtype, shape}, name, Side::kVision});
  }
  const size_t strip = config.audio.weight_prefix.size();
  for (const auto& list : {qwen2_audio::ExpectedAudioTensors(config.audio),
                           qwen2_audio::ExpectedAudioProjectorTensors(config.audio)}) {
    for (const auto& [name, shape] : list)
      tensors.push_back({{name, options.dtype, shape}, name.substr(strip), Side::kAudio});
  }
  std::sort(tensors.begin(), tensors.end(),
            [](const Entry& a, const Entry& b) { return a.spec.name < b.spec.name; });
  std::vector<TensorSpec> specs;
  specs.reserve(tensors.size());
  for (const Entry& t : tensors) specs.push_back(t.spec);
  std::vector<uint8_t> bytes;
  const auto produce = [&](size_t i, const ByteSink& sink) -> absl::Status {
    const Entry& t = tensors[i];
    int64_t numel = 1;
    for (int64_t d : t.spec.shape) numel *= d;
    std::vector<float> values;
    switch (t.side) {
      case Side::kDecoder:
        values = RandomTensorValues(t.stream, numel, options.seed);
        break;
      case Side::kVision:
        values = llava::RandomVisionTensorValues(t.stream, numel, options.seed);
        break;
      case Side::kAudio:
        values = qwen2_audio::RandomAudioTensorValues(t.stream, numel, options.seed);
        break;
    }
    EncodeTensorValues(values.data(), values.size(), t.spec.dtype, &bytes);
    return sink(bytes.data(), bytes.size());
  };
  const std::string path = dir + "/model.safetensors";
  RETURN_IF_ERROR(WriteSafetensorsStreamed(path, specs, produce, {{"format", "pt"}}));
  written.push_back({path, static_cast<uint64_t>(fs::file_size(path, ec))});
  return written;
}

absl::StatusOr<MuseConfig> MusePreset(const std::string& name, const ModelConfig& decoder) {
  if (name != "muse-tiny") {
    return absl::InvalidArgumentError(absl::StrCat("unknown Muse preset '", name, "' (muse-tiny)"));
  }
  MuseConfig c;
  ASSIGN_OR_RETURN(c.vision, llava::LlavaPreset("llava-tiny", decoder));
  ASSIGN_OR_RETURN(c.audio, qwen2_audio::Qwen2AudioPreset("qwen2-audio-tiny", decoder));
  c.audio.weight_prefix = qwen2_audio::kMuseAudioPrefix;
  // Placeholders: the last two ids unless the caller gives tokenizer ids.
  c.vision.image_token_index = decoder.vocab_size - 2;
  c.audio.audio_token_index = decoder.vocab_size - 1;
  return c;
}

}  // namespace muse::models::muse_composite
