// Public entry point: a parsed chat template (HF tokenizer_config.json `chat_template`) that
// renders byte-identically to @huggingface/jinja (transformers.js) for the supported subset.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/statusor.h"

namespace muse::jinja {

struct Node;

class ChatTemplate {
 public:
  // Lexes, parses and checks the template. Unsupported constructs (unknown tags, filters,
  // tests, functions or methods) fail here, not at render time.
  static absl::StatusOr<ChatTemplate> Parse(std::string source);

  // `context` is an object: messages, tools, add_generation_prompt, bos_token, eos_token and
  // any extra kwargs. Errors (including raise_exception) come back as InvalidArgument; the
  // message of raise_exception() is returned verbatim.
  absl::StatusOr<std::string> Render(const nlohmann::json& context) const;
  // Same, keeping the caller's key order (visible through tojson and dict iteration).
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& context) const;

  const std::string& source() const { return source_; }

 private:
  struct Program;
  ChatTemplate(std::string source, std::shared_ptr<const Program> program)
      : source_(std::move(source)), program_(std::move(program)) {}

  template <typename Json>
  absl::StatusOr<std::string> RenderImpl(const Json& context) const;

  std::string source_;
  std::shared_ptr<const Program> program_;
};

}  // namespace muse::jinja
