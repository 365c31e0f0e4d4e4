#include "models/model_config.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "absl/strings/str_join.h"
#include "models/nested_text_config.h"
#include "src/common/file_util.h"

namespace muse::models {
namespace {

using json = nlohmann::json;

constexpr const char* kSupportedArchs = "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM";
// transformers' Qwen2Config default; layers at or past it use the sliding window.
constexpr int64_t kQwen2DefaultMaxWindowLayers = 28;

absl::Status KeyError(const std::string& key, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: key '", key, "' ", what));
}

bool IsNull(const json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null();
}

// Integers may be written as 4096 or 4096.0 by some exporters; anything fractional is an error.
absl::StatusOr<int64_t> AsInt(const json& v, const std::string& key) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return KeyError(key, "is out of range");
    }
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) {
      return static_cast<int64_t>(d);
    }
  }
  return KeyError(key, absl::StrCat("must be an integer, got ", v.dump()));
}

absl::StatusOr<int64_t> GetInt(const json& j, const char* key) {
  if (IsNull(j, key)) return KeyError(key, "is missing");
  return AsInt(j.at(key), key);
}

absl::StatusOr<int64_t> GetIntOr(const json& j, const char* key, int64_t fallback) {
  if (IsNull(j, key)) return fallback;
  return AsInt(j.at(key), key);
}

absl::StatusOr<double> GetDoubleOr(const json& j, const char* key, double fallback,
                                   const std::string& prefix = "") {
  if (IsNull(j, key)) return fallback;
  const json& v = j.at(key);
  if (!v.is_number())
    return KeyError(prefix + key, absl::StrCat("must be a number, got ", v.dump()));
  return v.get<double>();
}

absl::StatusOr<bool> GetBoolOr(const json& j, const char* key, bool fallback) {
  if (IsNull(j, key)) return fallback;
  const json& v = j.at(key);
  if (!v.is_boolean()) return KeyError(key, absl::StrCat("must be true or false, got ", v.dump()));
  return v.get<bool>();
}

absl::Status RequirePositive(int64_t value, const char* key) {
  if (value <= 0) return KeyError(key, absl::StrCat("must be positive, got ", value));
  return absl::OkStatus();
}

absl::StatusOr<RopeScaling> ParseRopeScaling(const json& j) {
  RopeScaling rs;
  if (IsNull(j, "rope_scaling")) return rs;
  const json& r = j.at("rope_scaling");
  if (!r.is_object()) return KeyError("rope_scaling", "must be an object or null");
  std::string type;
  for (const char* k : {"rope_type", "type"}) {
    if (!IsNull(r, k)) {
      if (!r.at(k).is_string())
        return KeyError(absl::StrCat("rope_scaling.", k), "must be a string");
      type = r.at(k).get<std::string>();
      break;
    }
  }
  if (type.empty()) return KeyError("rope_scaling.rope_type", "is missing");
  if (type == "default") return rs;  // transformers writes this for plain RoPE
  if (type != "llama3" && type != "linear") {
    return KeyError("rope_scaling.rope_type",
                    absl::StrCat("has unsupported value '", type, "' (supported: llama3, linear)"));
  }
  rs.type = type;
  if (IsNull(r, "factor")) return KeyError("rope_scaling.factor", "is missing");
  ASSIGN_OR_RETURN(rs.factor, GetDoubleOr(r, "factor", 1.0, "rope_scaling."));
  if (!(rs.factor > 0)) return KeyError("rope_scaling.factor", "must be positive");
  if (type == "llama3") {
    for (const char* k :
         {"low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}) {
      if (IsNull(r, k)) return KeyError(absl::StrCat("rope_scaling.", k), "is missing");
    }
    ASSIGN_OR_RETURN(rs.low_freq_factor, GetDoubleOr(r, "low_freq_factor", 1.0, "rope_scaling."));
    ASSIGN_OR_RETURN(rs.high_freq_factor, GetDoubleOr(r, "high_freq_factor", 4.0, "rope_scaling."));
    ASSIGN_OR_RETURN(rs.original_max_position_embeddings,
                     AsInt(r.at("original_max_position_embeddings"),
                           "rope_scaling.original_max_position_embeddings"));
    if (!(rs.low_freq_factor > 0))
      return KeyError("rope_scaling.low_freq_factor", "must be positive");
    // The llama3 formula divides by (high - low).
    if (!(rs.high_freq_factor > rs.low_freq_factor)) {
      return KeyError("rope_scaling.high_freq_factor", "must be greater than low_freq_factor");
    }
    if (rs.original_max_position_embeddings <= 0) {
      return KeyError("rope_scaling.original_max_position_embeddings", "must be positive");
    }
  }
  return rs;
}

absl::StatusOr<std::vector<int64_t>> ParseEos(const json& j) {
  std::vector<int64_t> ids;
  if (IsNull(j, "eos_token_id")) return ids;
  const json& v = j.at("eos_token_id");
  if (v.is_array()) {
    for (const json& e : v) {
      ASSIGN_OR_RETURN(int64_t id, AsInt(e, "eos_token_id"));
      ids.push_back(id);
    }
  } else {
    ASSIGN_OR_RETURN(int64_t id, AsInt(v, "eos_token_id"));
    ids.push_back(id);
  }
  for (int64_t id : ids) {
    if (id < 0) return KeyError("eos_token_id", absl::StrCat("must be non-negative, got ", id));
  }
  return ids;
}

absl::StatusOr<ModelConfig> ParseObject(const json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("config.json: top level must be an object");
  ModelConfig c;
  if (IsNull(j, "architectures")) return KeyError("architectures", "is missing");
  const json& archs = j.at("architectures");
  if (!archs.is_array() || archs.empty() || !archs[0].is_string()) {
    return KeyError("architectures", "must be a non-empty list of strings");
  }
  c.architecture = archs[0].get<std::string>();
  if (c.architecture == "LlamaForCausalLM") {
    c.arch = Arch::kLlama;
  } else if (c.architecture == "MistralForCausalLM") {
    c.arch = Arch::kMistral;
  } else if (c.architecture == "Qwen2ForCausalLM") {
    c.arch = Arch::kQwen2;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("config.json: unsupported architecture '",
                                                   c.architecture,
                                                   "' (supported: ", kSupportedArchs, ")"));
  }

  ASSIGN_OR_RETURN(c.vocab_size, GetInt(j, "vocab_size"));
  ASSIGN_OR_RETURN(c.hidden_size, GetInt(j, "hidden_size"));
  ASSIGN_OR_RETURN(c.intermediate_size, GetInt(j, "intermediate_size"));
  ASSIGN_OR_RETURN(c.num_hidden_layers, GetInt(j, "num_hidden_layers"));
  ASSIGN_OR_RETURN(c.num_attention_heads, GetInt(j, "num_attention_heads"));
  ASSIGN_OR_RETURN(c.max_position_embeddings, GetInt(j, "max_position_embeddings"));
  RETURN_IF_ERROR(RequirePositive(c.vocab_size, "vocab_size"));
  RETURN_IF_ERROR(RequirePositive(c.hidden_size, "hidden_size"));
  RETURN_IF_ERROR(RequirePositive(c.intermediate_size, "intermediate_size"));
  RETURN_IF_ERROR(RequirePositive(c.num_hidden_layers, "num_hidden_layers"));
  RETURN_IF_ERROR(RequirePositive(c.num_attention_heads, "num_attention_heads"));
  RETURN_IF_ERROR(RequirePositive(c.max_position_embeddings, "max_position_embeddings"));

  ASSIGN_OR_RETURN(c.num_key_value_heads,
                   GetIntOr(j, "num_key_value_heads", c.num_attention_heads));
  RETURN_IF_ERROR(RequirePositive(c.num_key_value_heads, "num_key_value_heads"));
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return KeyError("num_key_value_heads",
                    absl::StrCat("(", c.num_key_value_heads, ") must divide num_attention_heads (",
                                 c.num_attention_heads, ")"));
  }
  if (IsNull(j, "head_dim")) {
    if (c.hidden_size % c.num_attention_heads != 0) {
      return KeyError(
          "hidden_size",
          absl::StrCat("(", c.hidden_size, ") must be divisible by num_attention_heads (",
                       c.num_attention_heads, ") when head_dim is not given"));
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  } else {
    ASSIGN_OR_RETURN(c.head_dim, GetInt(j, "head_dim"));
    RETURN_IF_ERROR(RequirePositive(c.head_dim, "head_dim"));
  }
  // RoPE rotates pairs of dimensions.
  if (c.head_dim % 2 != 0)
    return KeyError("head_dim", absl::StrCat("must be even, got ", c.head_dim));

  ASSIGN_OR_RETURN(c.rope_theta, GetDoubleOr(j, "rope_theta", 10000.0));
  if (!(c.rope_theta > 0)) return KeyError("rope_theta", "must be positive");
  ASSIGN_OR_RETURN(c.rms_norm_eps, GetDoubleOr(j, "rms_norm_eps", 1e-6));
  if (!(c.rms_norm_eps > 0)) return KeyError("rms_norm_eps", "must be positive");
  ASSIGN_OR_RETURN(c.tie_word_embeddings, GetBoolOr(j, "tie_word_embeddings", false));

  switch (c.arch) {
    case Arch::kLlama: {
      ASSIGN_OR_RETURN(c.attention_bias, GetBoolOr(j, "attention_bias", false));
      ASSIGN_OR_RETURN(bool mlp_bias, GetBoolOr(j, "mlp_bias", false));
      if (mlp_bias) return KeyError("mlp_bias", "true (gate/up/down biases) is not supported");
      break;
    }
    case Arch::kMistral: {
      // MistralAttention has no bias and ignores attention_bias.
      c.attention_bias = false;
      ASSIGN_OR_RETURN(c.sliding_window, GetIntOr(j, "sliding_window", 0));
      break;
    }
    case Arch::kQwen2: {
      c.attention_bias = true;
      ASSIGN_OR_RETURN(bool use_sw, GetBoolOr(j, "use_sliding_window", false));
      if (use_sw) {
        ASSIGN_OR_RETURN(int64_t window, GetIntOr(j, "sliding_window", 0));
        ASSIGN_OR_RETURN(int64_t max_window_layers,
                         GetIntOr(j, "max_window_layers", kQwen2DefaultMaxWindowLayers));
        // transformers applies the window to layers >= max_window_layers; one window size for
        // all layers is all we model, so a mix of windowed and full layers is refused.
        if (max_window_layers <= 0) {
          c.sliding_window = window;
        } else if (max_window_layers < c.num_hidden_layers) {
          return KeyError("max_window_layers",
                          absl::StrCat("(", max_window_layers,
                                       ") mixes sliding-window and full-attention layers, which "
                                       "is not supported"));
        }
      }
      break;
    }
  }
  if (c.sliding_window < 0) {
    return KeyError("sliding_window", absl::StrCat("must be non-negative, got ", c.sliding_window));
  }

  ASSIGN_OR_RETURN(c.rope_scaling, ParseRopeScaling(j));

  for (const char* k : {"torch_dtype", "dtype"}) {  // newer transformers write "dtype"
    if (!IsNull(j, k)) {
      if (!j.at(k).is_string()) return KeyError(k, "must be a string");
      c.torch_dtype = j.at(k).get<std::string>();
      break;
    }
  }
  ASSIGN_OR_RETURN(c.bos_token_id, GetIntOr(j, "bos_token_id", -1));
  if (c.bos_token_id < -1 || c.bos_token_id >= c.vocab_size) {
    return KeyError("bos_token_id",
                    absl::StrCat("(", c.bos_token_id, ") must be a token id below vocab_size (",
                                 c.vocab_size, ")"));
  }
  ASSIGN_OR_RETURN(c.eos_token_ids, ParseEos(j));
  return c;
}

const char* ModelType(Arch arch) {
  switch (arch) {
    case Arch::kLlama:
      return "llama";
    case Arch::kMistral:
      return "mistral";
    case Arch::kQwen2:
      return "qwen2";
  }
  return "llama";
}

const char* ArchitectureName(Arch arch) {
  switch (arch) {
    case Arch::kLlama:
      return "LlamaForCausalLM";
    case Arch::kMistral:
      return "MistralForCausalLM";
    case Arch::kQwen2:
      return "Qwen2ForCausalLM";
  }
  return "LlamaForCausalLM";
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text) {
  // nlohmann reports errors by exception; none may leave this module.
  try {
    json j = json::parse(json_text);
    return ParseObject(j);
  } catch (const json::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat("config.json is not valid JSON: ", e.what()));
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: ", e.what()));
  }
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  ASSIGN_OR_RETURN(std::string text, muse::ReadFile(path));
  auto config = ParseModelConfig(text);
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

std::string ModelConfigToJson(const ModelConfig& c) {
  json j;  // std::map keys: sorted, like transformers' to_json_string()
  j["architectures"] = json::array({ArchitectureName(c.arch)});
  j["model_type"] = ModelType(c.arch);
  j["attention_dropout"] = 0.0;
  j["hidden_act"] = "silu";
  j["initializer_range"] = 0.02;
  j["use_cache"] = true;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rope_theta"] = c.rope_theta;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  switch (c.arch) {
    case Arch::kLlama:
      j["attention_bias"] = c.attention_bias;
      j["mlp_bias"] = false;
      j["pretraining_tp"] = 1;
      break;
    case Arch::kMistral:
      j["sliding_window"] = c.sliding_window > 0 ? json(c.sliding_window) : json(nullptr);
      break;
    case Arch::kQwen2:
      j["use_sliding_window"] = c.sliding_window > 0;
      j["sliding_window"] = c.sliding_window > 0 ? json(c.sliding_window) : json(nullptr);
      // 0: every layer uses the window (see ParseObject); otherwise none does.
      j["max_window_layers"] = c.sliding_window > 0 ? 0 : c.num_hidden_layers;
      break;
  }
  if (c.rope_scaling.type.empty()) {
    j["rope_scaling"] = nullptr;
  } else {
    json rs;
    rs["rope_type"] = c.rope_scaling.type;
    rs["factor"] = c.rope_scaling.factor;
    if (c.rope_scaling.type == "llama3") {
      rs["low_freq_factor"] = c.rope_scaling.low_freq_factor;
      rs["high_freq_factor"] = c.rope_scaling.high_freq_factor;
      rs["original_max_position_embeddings"] = c.rope_scaling.original_max_position_embeddings;
    }
    j["rope_scaling"] = rs;
  }
  if (!c.torch_dtype.empty()) j["torch_dtype"] = c.torch_dtype;
  j["bos_token_id"] = c.bos_token_id >= 0 ? json(c.bos_token_id) : json(nullptr);
  if (c.eos_token_ids.empty()) {
    j["eos_token_id"] = nullptr;
  } else if (c.eos_token_ids.size() == 1) {
    j["eos_token_id"] = c.eos_token_ids[0];
  } else {
    j["eos_token_id"] = c.eos_token_ids;
  }
  j["transformers_version"] = "4.44.0";
  return j.dump(2) + "\n";
}

absl::StatusOr<ModelConfig> ParseNestedTextConfig(const std::string& text_config_json,
                                                  const std::string& default_model_type,
                                                  const std::vector<std::string>& supported) {
  using json = nlohmann::json;
  auto bad = [](const std::string& key, const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: key '", key, "' ", what));
  };
  json t = json::parse(text_config_json, nullptr, /*allow_exceptions=*/false);
  if (!t.is_object()) return bad("text_config", "must be an object");
  std::string model_type = default_model_type;
  // HF writes absent keys as null too.
  auto has = [&t](const std::string& key) { return t.contains(key) && !t.at(key).is_null(); };
  if (has("model_type")) {
    const json* it = &t.at("model_type");
    if (!it->is_string()) return bad("text_config.model_type", "must be a string");
    model_type = it->get<std::string>();
  }
  if (std::find(supported.begin(), supported.end(), model_type) == supported.end()) {
    return bad("text_config.model_type", absl::StrCat("'", model_type, "' is not supported (",
                                                      absl::StrJoin(supported, ", "), ")"));
  }
  // transformers' LlamaConfig / MistralConfig / Qwen2Config defaults.
  json d;
  if (model_type == "llama") {
    d = {{"architectures", {"LlamaForCausalLM"}},
         {"vocab_size", 32000},
         {"hidden_size", 4096},
         {"intermediate_size", 11008},
         {"num_hidden_layers", 32},
         {"num_attention_heads", 32},
         {"max_position_embeddings", 2048},
         {"rms_norm_eps", 1e-6}};
  } else if (model_type == "mistral") {
    d = {{"architectures", {"MistralForCausalLM"}},
         {"vocab_size", 32000},
         {"hidden_size", 4096},
         {"intermediate_size", 14336},
         {"num_hidden_layers", 32},
         {"num_attention_heads", 32},
         {"num_key_value_heads", 8},
         {"max_position_embeddings", 131072},
         {"rms_norm_eps", 1e-6},
         {"sliding_window", 4096}};
  } else if (model_type == "qwen2") {
    d = {{"architectures", {"Qwen2ForCausalLM"}},
         {"vocab_size", 151936},
         {"hidden_size", 4096},
         {"intermediate_size", 22016},
         {"num_hidden_layers", 32},
         {"num_attention_heads", 32},
         {"max_position_embeddings", 32768},
         {"rms_norm_eps", 1e-6}};
  } else {
    return bad("text_config.model_type", absl::StrCat("'", model_type, "' has no defaults here"));
  }
  for (auto it = d.begin(); it != d.end(); ++it) {
    if (!has(it.key())) t[it.key()] = it.value();
  }
  auto c = ParseModelConfig(t.dump());
  if (!c.ok()) {
    std::string msg(c.status().message());
    if (msg.rfind("config.json: ", 0) == 0) msg = msg.substr(13);
    return absl::InvalidArgumentError(absl::StrCat("config.json: text_config: ", msg));
  }
  return c;
}

}  // namespace muse::models
