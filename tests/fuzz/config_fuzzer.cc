// libFuzzer target: the JSON config parsers a model directory goes through. Each input is parsed
// as config.json (ParseModelConfig), as a LLaVA config.json (ParseLlavaConfig), as
// preprocessor_config.json (ParsePreprocessorConfig) and as tokenizer_config.json
// (ParseTokenizerConfig).
//
// Invariants: errors are InvalidArgument; a config that parses serialises (…ToJson) to text that
// parses back to the same values, and the LLaVA derived sizes are computable without UB.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "models/llava/llava_config.h"
#include "models/model_config.h"
#include "src/tokenizer/jinja/tokenizer_config.h"
#include "src/vision/preprocess.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

template <typename T>
void CheckError(const absl::StatusOr<T>& r, const char* what) {
  if (!r.ok()) Check(r.status().code() == absl::StatusCode::kInvalidArgument, what);
}

bool SameModel(const muse::models::ModelConfig& a, const muse::models::ModelConfig& b) {
  return a.architecture == b.architecture && a.arch == b.arch && a.vocab_size == b.vocab_size &&
         a.hidden_size == b.hidden_size && a.intermediate_size == b.intermediate_size &&
         a.num_hidden_layers == b.num_hidden_layers &&
         a.num_attention_heads == b.num_attention_heads &&
         a.num_key_value_heads == b.num_key_value_heads && a.head_dim == b.head_dim &&
         a.max_position_embeddings == b.max_position_embeddings &&
         a.tie_word_embeddings == b.tie_word_embeddings && a.attention_bias == b.attention_bias &&
         a.sliding_window == b.sliding_window && a.rope_scaling.type == b.rope_scaling.type &&
         a.torch_dtype == b.torch_dtype && a.bos_token_id == b.bos_token_id &&
         a.eos_token_ids == b.eos_token_ids;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);

  auto model = muse::models::ParseModelConfig(text);
  CheckError(model, "ParseModelConfig error is InvalidArgument");
  if (model.ok()) {
    auto again = muse::models::ParseModelConfig(muse::models::ModelConfigToJson(*model));
    Check(again.ok(), "ModelConfigToJson output parses");
    Check(SameModel(*model, *again), "ModelConfig round-trips");
  }

  auto llava = muse::models::llava::ParseLlavaConfig(text);
  CheckError(llava, "ParseLlavaConfig error is InvalidArgument");
  if (llava.ok()) {
    const auto& v = llava->vision;
    Check(v.num_patches() >= 1 && v.head_dim() >= 1, "vision sizes positive");
    const int64_t layer = llava->feature_layer_index();
    Check(layer >= 0 && layer <= v.num_hidden_layers, "feature layer in range");
    Check(llava->num_image_tokens() >= 0, "image tokens non-negative");
    auto again =
        muse::models::llava::ParseLlavaConfig(muse::models::llava::LlavaConfigToJson(*llava));
    Check(again.ok(), "LlavaConfigToJson output parses");
    Check(SameModel(llava->text, again->text) && again->vision.image_size == v.image_size &&
              again->vision.patch_size == v.patch_size &&
              again->image_token_index == llava->image_token_index &&
              again->vision_feature_layer == llava->vision_feature_layer,
          "LlavaConfig round-trips");
  }

  auto pre = muse::vision::ParsePreprocessorConfig(text);
  CheckError(pre, "ParsePreprocessorConfig error is InvalidArgument");
  if (pre.ok()) {
    auto again =
        muse::vision::ParsePreprocessorConfig(muse::vision::PreprocessorConfigToJson(*pre));
    Check(again.ok(), "PreprocessorConfigToJson output parses");
    Check(again->shortest_edge == pre->shortest_edge && again->crop_height == pre->crop_height &&
              again->crop_width == pre->crop_width && again->resize_height == pre->resize_height &&
              again->resize_width == pre->resize_width && again->resample == pre->resample &&
              again->image_mean == pre->image_mean && again->image_std == pre->image_std,
          "PreprocessorConfig round-trips");
  }

  const auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_discarded()) {
    auto tok = muse::jinja::ParseTokenizerConfig(json);
    CheckError(tok, "ParseTokenizerConfig error is InvalidArgument");
    if (tok.ok()) {
      auto t = tok->SelectTemplate("", /*has_tools=*/true);
      if (t.ok()) Check(tok->templates.size() >= 1, "a selected template exists");
    }
  }
  return 0;
}
