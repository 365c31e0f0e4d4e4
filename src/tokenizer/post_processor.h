// tokenizer.json "post_processor": TemplateProcessing (BOS/EOS), ByteLevel (ids unchanged),
// Sequence.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <vector>

#include "absl/status/statusor.h"

namespace muse::tokenizer {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Adds special tokens around a single sequence when `add_special_tokens` is set.
  virtual void Process(std::vector<int32_t>& ids, bool add_special_tokens) const = 0;
};

absl::StatusOr<std::unique_ptr<PostProcessor>> MakePostProcessor(const nlohmann::json& config);

}  // namespace muse::tokenizer
