#include "src/tokenizer/tokenizer.h"

#include <algorithm>
#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/str_cat.h"
#include "src/common/file_util.h"
#include "src/common/status.h"
#include "src/tokenizer/added_vocabulary.h"
#include "src/tokenizer/bpe_model.h"
#include "src/tokenizer/decoder.h"
#include "src/tokenizer/json_util.h"
#include "src/tokenizer/normalizer.h"
#include "src/tokenizer/post_processor.h"
#include "src/tokenizer/pre_tokenizer.h"
#include "src/tokenizer/utf8.h"

namespace muse::tokenizer {

struct Tokenizer::Impl {
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<BpeModel> model;
  std::unique_ptr<PostProcessor> post_processor;
  std::unique_ptr<Decoder> decoder;
  AddedVocabulary added;
  size_t vocab_size = 0;

  absl::Status EncodeText(std::string_view text, std::vector<int32_t>& ids) const;
  absl::Status EncodePlain(std::string_view text, bool at_start, std::vector<int32_t>& ids) const;
};

namespace {

absl::StatusOr<std::vector<AddedToken>> ParseAddedTokens(const nlohmann::json& root) {
  std::vector<AddedToken> out;
  auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return out;
  if (!it->is_array()) return absl::InvalidArgumentError("'added_tokens' must be an array");
  for (const auto& t : *it) {
    AddedToken a;
    ASSIGN_OR_RETURN(a.content, GetString(t, "content", "added token"));
    auto id = t.find("id");
    if (id == t.end() || !id->is_number_integer() || id->get<int64_t>() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("added token '", a.content, "' has no valid id"));
    }
    a.id = id->get<int32_t>();
    ASSIGN_OR_RETURN(a.single_word, GetBool(t, "single_word", false, "added token"));
    ASSIGN_OR_RETURN(a.lstrip, GetBool(t, "lstrip", false, "added token"));
    ASSIGN_OR_RETURN(a.rstrip, GetBool(t, "rstrip", false, "added token"));
    ASSIGN_OR_RETURN(a.normalized, GetBool(t, "normalized", true, "added token"));
    ASSIGN_OR_RETURN(a.special, GetBool(t, "special", false, "added token"));
    out.push_back(std::move(a));
  }
  return out;
}

template <typename T, typename Make>
absl::Status ParseOptional(const nlohmann::json& root, const char* key, std::unique_ptr<T>& dst,
                           Make make) {
  auto it = root.find(key);
  if (it == root.end() || it->is_null()) return absl::OkStatus();
  auto r = make(*it);
  if (!r.ok()) return absl::InvalidArgumentError(absl::StrCat(key, ": ", r.status().message()));
  dst = std::move(*r);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Tokenizer::Impl>> Load(const nlohmann::json& root) {
  if (!root.is_object())
    return absl::InvalidArgumentError("tokenizer.json: top level must be an object");
  for (const char* key : {"truncation", "padding"}) {
    if (auto it = root.find(key); it != root.end() && !it->is_null()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer.json: '", key, "' is set; not supported"));
    }
  }
  auto impl = std::make_unique<Tokenizer::Impl>();
  RETURN_IF_ERROR(ParseOptional(root, "normalizer", impl->normalizer, MakeNormalizer));
  RETURN_IF_ERROR(ParseOptional(root, "pre_tokenizer", impl->pre_tokenizer, MakePreTokenizer));
  RETURN_IF_ERROR(ParseOptional(root, "post_processor", impl->post_processor, MakePostProcessor));
  RETURN_IF_ERROR(ParseOptional(root, "decoder", impl->decoder, MakeDecoder));
  auto model = root.find("model");
  if (model == root.end() || !model->is_object())
    return absl::InvalidArgumentError("tokenizer.json: missing 'model'");
  auto m = BpeModel::FromJson(*model);
  if (!m.ok()) return absl::InvalidArgumentError(absl::StrCat("model: ", m.status().message()));
  impl->model = std::move(*m);
  ASSIGN_OR_RETURN(std::vector<AddedToken> added, ParseAddedTokens(root));
  impl->vocab_size = impl->model->size();
  for (const auto& a : added)
    impl->vocab_size = std::max(impl->vocab_size, static_cast<size_t>(a.id) + 1);
  RETURN_IF_ERROR(impl->added.Build(std::move(added), impl->normalizer.get()));
  return impl;
}

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view json) {
  nlohmann::json root = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return absl::InvalidArgumentError("tokenizer.json: not valid JSON");
  // Typed accessors are guarded, but keep any nlohmann exception from leaving the module.
  try {
    ASSIGN_OR_RETURN(auto impl, Load(root));
    return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, muse::ReadFile(path));
  auto t = FromJson(text);
  if (!t.ok())
    return absl::Status(t.status().code(), absl::StrCat(path, ": ", t.status().message()));
  return t;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromDirectory(const std::string& dir) {
  return FromFile(dir + "/tokenizer.json");
}

absl::Status Tokenizer::Impl::EncodePlain(std::string_view text, bool at_start,
                                          std::vector<int32_t>& ids) const {
  thread_local std::vector<Piece> pieces;
  pieces.clear();
  pieces.push_back(Piece{std::string(text), at_start});
  if (pre_tokenizer) RETURN_IF_ERROR(pre_tokenizer->PreTokenize(pieces));
  for (const Piece& p : pieces) model->Tokenize(p.text, ids);
  return absl::OkStatus();
}

absl::Status Tokenizer::Impl::EncodeText(std::string_view text, std::vector<int32_t>& ids) const {
  std::vector<Segment> segments;
  added.Split(text, /*normalized_set=*/false, segments);
  std::vector<Segment> sub;
  std::string norm;
  for (const Segment& s : segments) {
    if (s.id >= 0) {
      ids.push_back(s.id);
      continue;
    }
    std::string_view piece = text.substr(s.begin, s.end - s.begin);
    if (normalizer) {
      norm.assign(piece);
      RETURN_IF_ERROR(normalizer->Normalize(norm));
      piece = norm;
    }
    if (piece.empty()) continue;
    if (!added.has_normalized()) {
      RETURN_IF_ERROR(EncodePlain(piece, s.begin == 0, ids));
      continue;
    }
    sub.clear();
    added.Split(piece, /*normalized_set=*/true, sub);
    for (const Segment& t : sub) {
      if (t.id >= 0) {
        ids.push_back(t.id);
      } else {
        RETURN_IF_ERROR(
            EncodePlain(piece.substr(t.begin, t.end - t.begin), s.begin == 0 && t.begin == 0, ids));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                                       bool add_special_tokens) const {
  if (const size_t bad = FindInvalidUtf8(text); bad != kUtf8Valid) {
    return absl::InvalidArgumentError(absl::StrCat("invalid UTF-8 at byte offset ", bad));
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  RETURN_IF_ERROR(impl_->EncodeText(text, ids));
  if (impl_->post_processor) impl_->post_processor->Process(ids, add_special_tokens);
  return ids;
}

absl::StatusOr<std::vector<std::vector<int32_t>>> Tokenizer::EncodeBatch(
    std::span<const std::string> texts, bool add_special_tokens, int num_threads) const {
  std::vector<std::vector<int32_t>> out(texts.size());
  std::vector<absl::Status> errors(texts.size());
  // Threads for this call only (no pool kept alive between calls); texts are claimed one at a
  // time so uneven lengths balance.
  const size_t hw = std::max(1u, std::thread::hardware_concurrency());
  const size_t threads =
      std::min(texts.size(), num_threads > 0 ? static_cast<size_t>(num_threads) : hw);
  std::atomic<size_t> next{0};
  auto drain = [&] {
    for (size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < texts.size();) {
      auto r = Encode(texts[i], add_special_tokens);
      if (r.ok()) {
        out[i] = std::move(*r);
      } else {
        errors[i] = r.status();
      }
    }
  };
  {
    std::vector<std::jthread> helpers;
    for (size_t t = 1; t < threads; ++t) helpers.emplace_back(drain);
    drain();
  }  // joins the helpers
  for (size_t i = 0; i < errors.size(); ++i) {
    if (!errors[i].ok()) {
      return absl::Status(errors[i].code(), absl::StrCat("text ", i, ": ", errors[i].message()));
    }
  }
  return out;
}

absl::StatusOr<std::string> Tokenizer::Decode(std::span<const int32_t> ids,
                                              bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (const AddedToken* a = impl_->added.FindById(id)) {
      if (!(skip_special_tokens && a->special)) tokens.push_back(a->content);
      continue;
    }
    const std::string* t = impl_->model->IdToToken(id);
    if (!t) return absl::InvalidArgumentError(absl::StrCat("unknown token id ", id));
    tokens.push_back(*t);
  }
  if (!impl_->decoder) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) absl::StrAppend(&out, i ? " " : "", tokens[i]);
    return out;
  }
  RETURN_IF_ERROR(impl_->decoder->DecodeChain(tokens));
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

std::optional<std::string> Tokenizer::IdToToken(int32_t id) const {
  if (const AddedToken* a = impl_->added.FindById(id)) return a->content;
  if (const std::string* t = impl_->model->IdToToken(id)) return *t;
  return std::nullopt;
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  if (auto id = impl_->added.FindByContent(token)) return id;
  return impl_->model->TokenToId(token);
}

std::optional<std::string> Tokenizer::TokenBytes(int32_t id) const {
  if (const AddedToken* a = impl_->added.FindById(id)) return a->content;
  const std::string* t = impl_->model->IdToToken(id);
  if (!t) return std::nullopt;
  std::string bytes = *t;
  if (impl_->decoder) impl_->decoder->TokenBytes(bytes);
  return bytes;
}

bool Tokenizer::IsSpecial(int32_t id) const { return impl_->added.IsSpecialId(id); }

size_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

}  // namespace muse::tokenizer
