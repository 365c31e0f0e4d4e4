// tokenizer.json "decoder": ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace muse::tokenizer {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // One step of HF's decode_chain: token strings in, token strings out.
  virtual absl::Status DecodeChain(std::vector<std::string>& tokens) const = 0;
  // The bytes one token appends in the middle of a text, in place: the same per-token mapping
  // without what depends on neighbours (no UTF-8 repair, no stripping at the start of the text).
  // Used to build grammar-constrained decoding's byte vocabulary.
  virtual void TokenBytes(std::string& token) const = 0;
};

absl::StatusOr<std::unique_ptr<Decoder>> MakeDecoder(const nlohmann::json& config);

}  // namespace muse::tokenizer
