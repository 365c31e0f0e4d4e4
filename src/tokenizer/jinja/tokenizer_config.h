// Reads the chat-template fields of a Hugging Face tokenizer_config.json.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace muse::jinja {

struct TokenizerChatConfig {
  // `chat_template` as a string is stored under "default"; a list of {name, template} keeps its
  // names.
  std::map<std::string, std::string> templates;
  // Strings, or the "content" of AddedToken objects; absent when null or missing.
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;

  // `name` if given; otherwise "tool_use" when `has_tools` and present; otherwise "default".
  absl::StatusOr<std::string> SelectTemplate(std::string_view name = "",
                                             bool has_tools = false) const;
};

absl::StatusOr<TokenizerChatConfig> ParseTokenizerConfig(const nlohmann::json& config);
absl::StatusOr<TokenizerChatConfig> LoadTokenizerConfig(const std::string& path);

}  // namespace muse::jinja
