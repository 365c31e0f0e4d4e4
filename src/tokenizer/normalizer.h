// tokenizer.json "normalizer": NFC, Replace, Prepend and Sequence.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace muse::tokenizer {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Rewrites `text` (valid UTF-8) in place.
  virtual absl::Status Normalize(std::string& text) const = 0;
};

// Builds a normalizer from its JSON object; unknown types are an InvalidArgument error.
absl::StatusOr<std::unique_ptr<Normalizer>> MakeNormalizer(const nlohmann::json& config);

}  // namespace muse::tokenizer
