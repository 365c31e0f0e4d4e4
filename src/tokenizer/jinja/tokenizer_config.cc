#include "src/tokenizer/jinja/tokenizer_config.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "src/common/file_util.h"

namespace muse::jinja {
namespace {

absl::StatusOr<std::optional<std::string>> TokenContent(const nlohmann::json& config,
                                                        const char* key) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::optional<std::string>();
  if (it->is_string()) return std::optional<std::string>(it->get<std::string>());
  if (it->is_object()) {
    auto content = it->find("content");
    if (content != it->end() && content->is_string())
      return std::optional<std::string>(content->get<std::string>());
  }
  return absl::InvalidArgumentError(
      absl::StrCat("tokenizer_config: ", key, " must be a string or an AddedToken"));
}

}  // namespace

absl::StatusOr<std::string> TokenizerChatConfig::SelectTemplate(std::string_view name,
                                                                bool has_tools) const {
  if (templates.empty()) return absl::NotFoundError("tokenizer_config: no chat_template");
  std::string key(name);
  if (key.empty()) key = (has_tools && templates.count("tool_use")) ? "tool_use" : "default";
  auto it = templates.find(key);
  if (it == templates.end())
    return absl::NotFoundError(absl::StrCat("tokenizer_config: no chat_template named ", key));
  return it->second;
}

absl::StatusOr<TokenizerChatConfig> ParseTokenizerConfig(const nlohmann::json& config) {
  if (!config.is_object()) return absl::InvalidArgumentError("tokenizer_config: not a JSON object");
  TokenizerChatConfig out;
  auto it = config.find("chat_template");
  if (it != config.end() && !it->is_null()) {
    if (it->is_string()) {
      out.templates["default"] = it->get<std::string>();
    } else if (it->is_array()) {
      for (const auto& entry : *it) {
        if (!entry.is_object() || !entry.contains("name") || !entry.contains("template") ||
            !entry["name"].is_string() || !entry["template"].is_string()) {
          return absl::InvalidArgumentError(
              "tokenizer_config: chat_template list entries need name and template");
        }
        out.templates[entry["name"].get<std::string>()] = entry["template"].get<std::string>();
      }
    } else {
      return absl::InvalidArgumentError(
          "tokenizer_config: chat_template must be a string or a list");
    }
  }
  auto bos = TokenContent(config, "bos_token");
  if (!bos.ok()) return bos.status();
  out.bos_token = *bos;
  auto eos = TokenContent(config, "eos_token");
  if (!eos.ok()) return eos.status();
  out.eos_token = *eos;
  return out;
}

absl::StatusOr<TokenizerChatConfig> LoadTokenizerConfig(const std::string& path) {
  ASSIGN_OR_RETURN(nlohmann::json config, muse::ParseJsonFile(path));
  auto parsed = ParseTokenizerConfig(config);
  if (!parsed.ok()) {
    return absl::Status(parsed.status().code(),
                        absl::StrCat(path, ": ", parsed.status().message()));
  }
  return parsed;
}

}  // namespace muse::jinja
