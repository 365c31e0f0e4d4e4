#include "src/server/tokenizer_text.h"

#include "src/tokenizer/incremental_detokenizer.h"

namespace muse::server {
namespace {

class Decoder final : public engine::TextDecoder {
 public:
  Decoder(const tokenizer::Tokenizer& tok, const std::vector<int32_t>& prompt)
      : detok_(tok, prompt, /*skip_special_tokens=*/true) {}
  // Ids were validated against the vocabulary, so errors cannot happen; drop text if they do.
  std::string Decode(int32_t id) override { return detok_.Step(id).value_or(""); }
  std::string Flush() override { return detok_.Flush().value_or(""); }

 private:
  tokenizer::IncrementalDetokenizer detok_;
};

}  // namespace

std::unique_ptr<engine::TextDecoder> TokenizerDecoderFactory::Create(
    const std::vector<int32_t>& prompt_token_ids) {
  return std::make_unique<Decoder>(*tokenizer_, prompt_token_ids);
}

}  // namespace muse::server
