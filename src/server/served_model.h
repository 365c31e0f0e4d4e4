// The immutable per-model state the API layer needs besides the engine: tokenizer, chat template,
// limits. Built once at startup (server.cc), then shared read-only by every gRPC thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "models/model_config.h"
#include "src/tokenizer/jinja/chat_template.h"
#include "src/tokenizer/tokenizer.h"

namespace muse::server {

struct ServedModel {
  std::string id;  // served model name (directory basename unless --served-model-name)
  models::ModelConfig config;
  int64_t max_model_len = 0;  // prompt + completion tokens
  int64_t kv_blocks_total = 0;
  int max_num_seqs = 0;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  std::optional<jinja::ChatTemplate> chat_template;
  std::string bos_token;  // for the chat template context
  std::string eos_token;
  bool supports_images = false;  // no vision tower is wired yet
};

}  // namespace muse::server
