#include "src/tokenizer/bpe_model.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <queue>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "src/common/status.h"
#include "src/tokenizer/json_util.h"
#include "src/tokenizer/utf8.h"

namespace muse::tokenizer {
namespace {

// HF caches only words shorter than this; longer ones (whole SentencePiece paragraphs) are rare
// repeats.
constexpr size_t kMaxCachedWordBytes = 256;
constexpr size_t kCacheCapacity = 1 << 17;
constexpr size_t kCacheShards = 32;

absl::StatusOr<std::string> OptionalString(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::string();
  if (!it->is_string())
    return absl::InvalidArgumentError(absl::StrCat("BPE: '", key, "' must be a string"));
  return it->get<std::string>();
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const nlohmann::json& model) {
  ASSIGN_OR_RETURN(std::string type, GetString(model, "type", "model"));
  if (type != "BPE") {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported model type '", type, "' (only BPE)"));
  }
  if (auto d = model.find("dropout");
      d != model.end() && !d->is_null() && !(d->is_number() && d->get<double>() == 0.0)) {
    return absl::InvalidArgumentError("BPE dropout is not supported for inference");
  }
  std::unique_ptr<BpeModel> m(new BpeModel());
  ASSIGN_OR_RETURN(m->byte_fallback_, GetBool(model, "byte_fallback", false, "BPE"));
  ASSIGN_OR_RETURN(m->fuse_unk_, GetBool(model, "fuse_unk", false, "BPE"));
  ASSIGN_OR_RETURN(m->ignore_merges_, GetBool(model, "ignore_merges", false, "BPE"));
  ASSIGN_OR_RETURN(m->prefix_, OptionalString(model, "continuing_subword_prefix"));
  ASSIGN_OR_RETURN(m->suffix_, OptionalString(model, "end_of_word_suffix"));
  ASSIGN_OR_RETURN(std::string unk, OptionalString(model, "unk_token"));

  auto vit = model.find("vocab");
  if (vit == model.end() || !vit->is_object())
    return absl::InvalidArgumentError("BPE: missing 'vocab' object");
  m->vocab_.reserve(vit->size());
  int64_t max_id = -1;
  for (auto it = vit->begin(); it != vit->end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() > INT32_MAX) {
      return absl::InvalidArgumentError(
          absl::StrCat("BPE: bad id for vocab entry '", it.key(), "'"));
    }
    const auto id = static_cast<int32_t>(it.value().get<int64_t>());
    m->vocab_[it.key()] = id;
    max_id = std::max<int64_t>(max_id, id);
  }
  m->id_to_token_.resize(max_id + 1);
  m->has_id_.assign(max_id + 1, false);
  for (const auto& [tok, id] : m->vocab_) {
    m->id_to_token_[id] = tok;
    m->has_id_[id] = true;
    size_t i = 0;
    if (!tok.empty()) {
      const uint32_t cp = DecodeUtf8(tok, i);
      if (i == tok.size()) m->char_ids_[cp] = id;
    }
  }
  for (int b = 0; b < 256; ++b) {
    auto it = m->vocab_.find(absl::StrFormat("<0x%02X>", b));
    m->byte_ids_[b] = it == m->vocab_.end() ? -1 : it->second;
  }
  if (!unk.empty()) {
    auto it = m->vocab_.find(unk);
    if (it == m->vocab_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("BPE: unk_token '", unk, "' is not in the vocab"));
    }
    m->unk_id_ = it->second;
  }

  auto mit = model.find("merges");
  if (mit == model.end() || !mit->is_array())
    return absl::InvalidArgumentError("BPE: missing 'merges' array");
  m->merges_.reserve(mit->size());
  int32_t rank = 0;
  for (const auto& e : *mit) {
    std::string a, b;
    if (e.is_string()) {
      const std::string& s = e.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("BPE: merge ", rank, " '", s, "' is not 'a b'"));
      }
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("BPE: merge ", rank, " is neither 'a b' nor [a, b]"));
    }
    auto ia = m->vocab_.find(a), ib = m->vocab_.find(b);
    if (ia == m->vocab_.end() || ib == m->vocab_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("BPE: merge ", rank, " uses a token not in the vocab"));
    }
    // The right part loses its continuing-subword prefix in the merged token.
    std::string merged = a;
    merged += (!m->prefix_.empty() && b.starts_with(m->prefix_)) ? b.substr(m->prefix_.size()) : b;
    auto im = m->vocab_.find(merged);
    if (im == m->vocab_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("BPE: merge ", rank, " result '", merged, "' is not in the vocab"));
    }
    // Later duplicates win, as in HF's HashMap collect.
    m->merges_[PairKey(ia->second, ib->second)] = Merge{rank, im->second};
    ++rank;
  }
  m->cache_ = std::make_unique<WordCache>(kCacheCapacity, kCacheShards);
  return m;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  auto it = vocab_.find(AbslView(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= has_id_.size() || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

void BpeModel::InitialSymbols(std::string_view w, std::vector<int32_t>& ids) const {
  // Pending unk: (id, present); fused runs collapse into one.
  bool unk_pending = false;
  std::string buf;
  size_t i = 0;
  while (i < w.size()) {
    const size_t start = i;
    const uint32_t cp = DecodeUtf8(w, i);
    const bool is_first = start == 0, is_last = i == w.size();
    const std::string_view ch = w.substr(start, i - start);
    std::optional<int32_t> id;
    if ((is_first || prefix_.empty()) && (!is_last || suffix_.empty())) {
      if (auto it = char_ids_.find(cp); it != char_ids_.end()) id = it->second;
    } else {
      buf.clear();
      if (!is_first) buf += prefix_;
      buf += ch;
      if (is_last) buf += suffix_;
      if (auto it = vocab_.find(buf); it != vocab_.end()) id = it->second;
    }
    if (id) {
      if (unk_pending) {
        ids.push_back(*unk_id_);
        unk_pending = false;
      }
      ids.push_back(*id);
      continue;
    }
    if (byte_fallback_) {
      // HF maps the bytes of the (prefixed/suffixed) string; all must exist.
      std::string_view bytes = ch;
      if ((!is_first && !prefix_.empty()) || (is_last && !suffix_.empty())) bytes = buf;
      bool all = true;
      for (char c : bytes) all = all && byte_ids_[static_cast<uint8_t>(c)] >= 0;
      if (all) {
        // A pending unk is left pending, as in HF (it is flushed by the next vocab hit).
        for (char c : bytes) ids.push_back(byte_ids_[static_cast<uint8_t>(c)]);
        continue;
      }
    }
    if (unk_id_) {
      if (unk_pending && !fuse_unk_) ids.push_back(*unk_id_);
      unk_pending = true;
    }
    // Without an unk token HF drops the character.
  }
  if (unk_pending) ids.push_back(*unk_id_);
}

void BpeModel::MergeAll(std::vector<int32_t>& ids) const {
  const int n = static_cast<int>(ids.size());
  if (n < 2) return;
  struct Sym {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  struct Cand {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
  };
  // Min-heap on (rank, pos): lowest rank first, leftmost on ties.
  auto worse = [](const Cand& a, const Cand& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  thread_local std::vector<Sym> syms;
  thread_local std::vector<Cand> heap;
  syms.resize(n);
  heap.clear();
  for (int i = 0; i < n; ++i) syms[i] = Sym{ids[i], i - 1, i + 1 < n ? i + 1 : -1, true};
  for (int i = 0; i + 1 < n; ++i) {
    if (const Merge* m = FindMerge(ids[i], ids[i + 1])) heap.push_back({m->rank, i, m->new_id});
  }
  std::make_heap(heap.begin(), heap.end(), worse);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), worse);
    const Cand top = heap.back();
    heap.pop_back();
    Sym& left = syms[top.pos];
    if (!left.alive || left.next < 0) continue;
    const int right_pos = left.next;
    Sym& right = syms[right_pos];
    // Stale entry: the pair at this position no longer produces this token.
    const Merge* m = FindMerge(left.id, right.id);
    if (!m || m->new_id != top.new_id) continue;
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) syms[right.next].prev = top.pos;
    if (left.prev >= 0) {
      if (const Merge* pm = FindMerge(syms[left.prev].id, left.id)) {
        heap.push_back({pm->rank, left.prev, pm->new_id});
        std::push_heap(heap.begin(), heap.end(), worse);
      }
    }
    if (left.next >= 0) {
      if (const Merge* nm = FindMerge(left.id, syms[left.next].id)) {
        heap.push_back({nm->rank, top.pos, nm->new_id});
        std::push_heap(heap.begin(), heap.end(), worse);
      }
    }
  }
  ids.clear();
  for (int i = 0; i >= 0; i = syms[i].next) ids.push_back(syms[i].id);
}

void BpeModel::Tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (auto it = vocab_.find(AbslView(word)); it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() < kMaxCachedWordBytes;
  if (cacheable && cache_->Lookup(word, out)) return;
  thread_local std::vector<int32_t> ids;
  ids.clear();
  InitialSymbols(word, ids);
  MergeAll(ids);
  if (cacheable) cache_->Insert(word, ids.data(), ids.size());
  out.insert(out.end(), ids.begin(), ids.end());
}

}  // namespace muse::tokenizer
