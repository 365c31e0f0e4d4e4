// The decoder inside a multimodal checkpoint's config.json (`text_config` of LLaVA, Qwen2-Audio):
// HF omits the keys equal to the transformers class defaults, so they are filled in before the
// decoder's own parser (ParseModelConfig) reads it. Defined in model_config.cc.
#pragma once

#include <string>
#include <vector>

#include "models/model_config.h"

namespace muse::models {

// `text_config_json`: the text_config object's JSON text. `default_model_type` when it has no
// model_type; `supported`: the model types the wrapper accepts, among llama, mistral and qwen2.
// Errors are InvalidArgument "config.json: text_config...: ..." naming the key.
absl::StatusOr<ModelConfig> ParseNestedTextConfig(const std::string& text_config_json,
                                                  const std::string& default_model_type,
                                                  const std::vector<std::string>& supported);

}  // namespace muse::models
