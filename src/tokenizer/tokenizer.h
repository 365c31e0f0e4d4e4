// HF tokenizer.json (BPE: byte-level and SentencePiece-style) encoder/decoder.
//
// Encode pipeline, as in HF tokenizers: added tokens are split out of the raw text; the rest is
// normalized, pre-tokenized and BPE-encoded; the post-processor adds BOS/EOS when asked.
// All methods are const and thread-safe once loaded.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace muse::tokenizer {

class Tokenizer {
 public:
  // Loads `path` (a tokenizer.json). Unknown model/normalizer/pre-tokenizer/decoder types fail
  // here.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromFile(const std::string& path);
  // Loads DIR/tokenizer.json.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromDirectory(const std::string& dir);
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view json);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Invalid UTF-8 is InvalidArgument naming the byte offset.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              bool add_special_tokens = true) const;

  // Encodes every text on `num_threads` threads started for this call (0 = hardware concurrency;
  // the calling thread is one of them). The server encodes one request per gRPC thread instead.
  // Fails with the first error, naming the text index.
  absl::StatusOr<std::vector<std::vector<int32_t>>> EncodeBatch(std::span<const std::string> texts,
                                                                bool add_special_tokens = true,
                                                                int num_threads = 0) const;

  // Full decode; unknown ids are InvalidArgument.
  absl::StatusOr<std::string> Decode(std::span<const int32_t> ids,
                                     bool skip_special_tokens = false) const;

  // Raw vocab string of `id` (added tokens included).
  std::optional<std::string> IdToToken(int32_t id) const;
  std::optional<int32_t> TokenToId(std::string_view token) const;
  // The bytes `id` appends in the middle of a decoded text (the decoder's per-token mapping:
  // byte-level characters back to bytes, SentencePiece "▁" to a space, "<0xNN>" to byte NN; added
  // tokens verbatim). May be invalid UTF-8 (part of a character). nullopt for unknown ids.
  std::optional<std::string> TokenBytes(int32_t id) const;
  // True for added tokens flagged "special" (what skip_special_tokens drops).
  bool IsSpecial(int32_t id) const;
  // One past the largest id, added tokens included.
  size_t vocab_size() const;

  // Pipeline state; defined in tokenizer.cc (named here so the loader there can build it).
  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace muse::tokenizer
