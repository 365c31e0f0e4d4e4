// Plugs the HF tokenizer's streaming detokenizer into the engine (engine::TextDecoderFactory),
// so stop strings and text deltas are produced on the engine thread with skip_special_tokens.
#pragma once

#include <memory>
#include <vector>

#include "src/engine/text_decoder.h"
#include "src/tokenizer/tokenizer.h"

namespace muse::server {

class TokenizerDecoderFactory final : public engine::TextDecoderFactory {
 public:
  // `tokenizer` must outlive the factory.
  explicit TokenizerDecoderFactory(const tokenizer::Tokenizer* tokenizer) : tokenizer_(tokenizer) {}
  std::unique_ptr<engine::TextDecoder> Create(
      const std::vector<int32_t>& prompt_token_ids) override;

 private:
  const tokenizer::Tokenizer* tokenizer_;
};

}  // namespace muse::server
