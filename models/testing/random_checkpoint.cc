#include "models/testing/random_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numbers>
#include <regex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "models/checkpoint.h"
#include "models/half.h"
#include "models/llama/llama_weights.h"

namespace muse::models {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr size_t kChunkElems = size_t{1} << 20;

// splitmix64: tiny, fast, and identical on every platform (std:: distributions are not).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
};

// Standard normals by Box-Muller, one pair per two draws.
class NormalStream {
 public:
  explicit NormalStream(uint64_t seed) : rng_(seed) {}
  double Next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = (static_cast<double>(rng_.Next() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
    const double u2 = static_cast<double>(rng_.Next() >> 11) * 0x1.0p-53;          // [0, 1)
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double angle = 2.0 * std::numbers::pi * u2;
    spare_ = r * std::sin(angle);
    has_spare_ = true;
    return r * std::cos(angle);
  }

 private:
  SplitMix64 rng_;
  double spare_ = 0;
  bool has_spare_ = false;
};

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// Fills `out` with the next values of one tensor's stream.
class TensorValues {
 public:
  TensorValues(const std::string& name, uint64_t seed)
      : normal_(seed ^ Fnv1a(name)), is_norm_(absl::EndsWith(name, "norm.weight")) {}
  void Fill(float* out, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      const double z = normal_.Next();
      out[i] = static_cast<float>(is_norm_ ? 1.0 + 0.1 * z : 0.02 * z);
    }
  }

 private:
  NormalStream normal_;
  bool is_norm_;
};

void Encode(const float* in, size_t n, DType dtype, std::vector<uint8_t>* out) {
  out->resize(n * kernels::dtype_size(dtype));
  if (dtype == DType::kFloat32) {
    std::memcpy(out->data(), in, n * sizeof(float));  // safetensors is little-endian, as are we
    return;
  }
  auto* dst = reinterpret_cast<uint16_t*>(out->data());
  for (size_t i = 0; i < n; ++i)
    dst[i] = dtype == DType::kBFloat16 ? FloatToBf16(in[i]) : FloatToF16(in[i]);
}

absl::Status WriteText(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot create ", tmp));
    out << text;
    out.close();
    if (!out) return absl::InternalError(absl::StrCat("write failed: ", tmp));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("rename ", tmp, " -> ", path, ": ", ec.message()));
  return absl::OkStatus();
}

uint64_t FileSize(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  return ec ? 0 : static_cast<uint64_t>(size);
}

// Splits tensors (in model order) into exactly `n` contiguous, non-empty, roughly equal groups.
std::vector<std::vector<size_t>> SplitIntoShards(const std::vector<uint64_t>& sizes, int n) {
  uint64_t total = 0;
  for (uint64_t s : sizes) total += s;
  const uint64_t target = (total + n - 1) / n;
  std::vector<std::vector<size_t>> shards(1);
  uint64_t current = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const size_t shards_after = static_cast<size_t>(n) - shards.size();
    const size_t tensors_left = sizes.size() - i;
    if (!shards.back().empty() && shards_after > 0 &&
        (current + sizes[i] > target || tensors_left <= shards_after)) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(i);
    current += sizes[i];
  }
  return shards;
}

// Removes weight files an earlier run left, so the directory holds exactly one checkpoint.
absl::Status RemoveOldWeights(const std::string& dir) {
  static const std::regex kShard(R"(model-\d+-of-\d+\.safetensors)");
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string file = entry.path().filename().string();
    if (file == "model.safetensors" || file == "model.safetensors.index.json" ||
        std::regex_match(file, kShard)) {
      fs::remove(entry.path(), ec);
      if (ec) return absl::InternalError(absl::StrCat("cannot remove ", entry.path().string()));
    }
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot list ", dir, ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace

void EncodeTensorValues(const float* in, size_t n, DType dtype, std::vector<uint8_t>* out) {
  Encode(in, n, dtype, out);
}

absl::Status WriteTextFileAtomically(const std::string& path, const std::string& text) {
  return WriteText(path, text);
}

std::vector<float> RandomTensorValues(const std::string& name, int64_t numel, uint64_t seed) {
  std::vector<float> out(static_cast<size_t>(numel));
  TensorValues(name, seed).Fill(out.data(), out.size());
  return out;
}

absl::StatusOr<DType> DTypeFromTorchName(const std::string& name) {
  if (name == "float32") return DType::kFloat32;
  if (name == "bfloat16") return DType::kBFloat16;
  if (name == "float16") return DType::kFloat16;
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported dtype '", name, "' (supported: float32, bfloat16, float16)"));
}

const char* TorchDTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "float32";
    case DType::kBFloat16:
      return "bfloat16";
    case DType::kFloat16:
      return "float16";
    default:
      return "unsupported";
  }
}

absl::StatusOr<std::vector<WrittenFile>> WriteRandomCheckpoint(
    const std::string& dir, const ModelConfig& config_in, const RandomCheckpointOptions& options) {
  if (options.dtype != DType::kFloat32 && options.dtype != DType::kBFloat16 &&
      options.dtype != DType::kFloat16) {
    return absl::InvalidArgumentError("random checkpoints are float32, bfloat16 or float16");
  }
  ModelConfig config = config_in;
  config.torch_dtype = TorchDTypeName(options.dtype);
  // Round-trip through the parser so the written config.json is known to load.
  const std::string config_text = ModelConfigToJson(config);
  RETURN_IF_ERROR(ParseModelConfig(config_text).status());

  const auto expected = ExpectedDecoderTensors(config);
  if (options.num_shards < 1 || static_cast<size_t>(options.num_shards) > expected.size()) {
    return absl::InvalidArgumentError(absl::StrCat("shards must be between 1 and ", expected.size(),
                                                   ", got ", options.num_shards));
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  RETURN_IF_ERROR(RemoveOldWeights(dir));

  std::vector<WrittenFile> written;
  const std::string config_path = dir + "/config.json";
  RETURN_IF_ERROR(WriteText(config_path, config_text));
  written.push_back({config_path, FileSize(config_path)});

  json gen;
  gen["_from_model_config"] = true;
  gen["bos_token_id"] = config.bos_token_id >= 0 ? json(config.bos_token_id) : json(nullptr);
  if (config.eos_token_ids.size() == 1) {
    gen["eos_token_id"] = config.eos_token_ids[0];
  } else if (!config.eos_token_ids.empty()) {
    gen["eos_token_id"] = config.eos_token_ids;
  }
  gen["transformers_version"] = "4.44.0";
  const std::string gen_path = dir + "/generation_config.json";
  RETURN_IF_ERROR(WriteText(gen_path, gen.dump(2) + "\n"));
  written.push_back({gen_path, FileSize(gen_path)});

  std::vector<uint64_t> sizes;
  uint64_t total = 0;
  for (const auto& [name, shape] : expected) {
    uint64_t n = kernels::dtype_size(options.dtype);
    for (int64_t d : shape) n *= static_cast<uint64_t>(d);
    sizes.push_back(n);
    total += n;
  }
  const auto shards = SplitIntoShards(sizes, options.num_shards);
  json weight_map = json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string file = shards.size() == 1 ? "model.safetensors"
                                                : absl::StrFormat("model-%05d-of-%05d.safetensors",
                                                                  s + 1, shards.size());
    std::vector<TensorSpec> specs;
    for (size_t i : shards[s]) {
      specs.push_back({expected[i].first, options.dtype, expected[i].second});
      weight_map[expected[i].first] = file;
    }
    // HF's writer orders same-dtype tensors by name.
    std::sort(specs.begin(), specs.end(),
              [](const TensorSpec& a, const TensorSpec& b) { return a.name < b.name; });
    std::vector<float> values;
    std::vector<uint8_t> bytes;
    const auto produce = [&](size_t i, const ByteSink& sink) -> absl::Status {
      uint64_t numel = 1;
      for (int64_t d : specs[i].shape) numel *= static_cast<uint64_t>(d);
      TensorValues stream(specs[i].name, options.seed);
      for (uint64_t done = 0; done < numel;) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunkElems, numel - done));
        values.resize(n);
        stream.Fill(values.data(), n);
        Encode(values.data(), n, options.dtype, &bytes);
        RETURN_IF_ERROR(sink(bytes.data(), bytes.size()));
        done += n;
      }
      return absl::OkStatus();
    };
    const std::string path = absl::StrCat(dir, "/", file);
    RETURN_IF_ERROR(WriteSafetensorsStreamed(path, specs, produce, {{"format", "pt"}}));
    written.push_back({path, FileSize(path)});
  }
  if (shards.size() > 1) {
    json index;
    index["metadata"] = {{"total_size", total}};
    index["weight_map"] = weight_map;
    const std::string index_path = dir + "/model.safetensors.index.json";
    RETURN_IF_ERROR(WriteText(index_path, index.dump(2) + "\n"));
    written.push_back({index_path, FileSize(index_path)});
  }
  return written;
}

}  // namespace muse::models
