// tokenizer.json "pre_tokenizer": Split, ByteLevel, Metaspace and Sequence.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace muse::tokenizer {

// One pre-token under construction.
struct Piece {
  std::string text;
  bool at_start =
      false;  // begins at offset 0 of the original input (Metaspace prepend_scheme=first)
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits and/or rewrites every piece; never leaves empty pieces.
  virtual absl::Status PreTokenize(std::vector<Piece>& pieces) const = 0;
};

absl::StatusOr<std::unique_ptr<PreTokenizer>> MakePreTokenizer(const nlohmann::json& config);

}  // namespace muse::tokenizer
