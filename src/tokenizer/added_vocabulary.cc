#include "src/tokenizer/added_vocabulary.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "src/common/status.h"
#include "src/tokenizer/normalizer.h"
#include "src/tokenizer/utf8.h"

namespace muse::tokenizer {
namespace {

// Rust char::is_alphanumeric (Alphabetic or Numeric), used by single_word; PCRE2 knows both.
bool IsAlnum(uint32_t cp) {
  if (cp < 0x80) return (cp >= '0' && cp <= '9') || ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z');
  static pcre2_code* re = [] {
    int err;
    PCRE2_SIZE off;
    const char* p = R"([\p{Alphabetic}\p{N}])";
    return pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p), PCRE2_ZERO_TERMINATED,
                         PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
  }();
  std::string s;
  AppendUtf8(cp, s);
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  const int rc = pcre2_match(re, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0,
                             PCRE2_ANCHORED, md, nullptr);
  pcre2_match_data_free(md);
  return rc > 0;
}

uint32_t LastChar(std::string_view s) {
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80) --i;
  return DecodeUtf8(s, i);
}

}  // namespace

void AddedVocabulary::Trie::Insert(std::string_view s, int32_t token_index) {
  if (s.empty()) return;
  if (nodes.empty()) nodes.push_back(-1);
  int32_t node = 0;
  for (char c : s) {
    const uint64_t key = (static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(c);
    auto it = edges.find(key);
    if (it == edges.end()) {
      nodes.push_back(-1);
      it = edges.emplace(key, static_cast<int32_t>(nodes.size() - 1)).first;
    }
    node = it->second;
  }
  // The first registered token with a given content keeps it.
  if (nodes[node] < 0) nodes[node] = token_index;
  first_byte[static_cast<uint8_t>(s[0])] = true;
  has_tokens = true;
}

size_t AddedVocabulary::Trie::LongestAt(std::string_view text, size_t pos,
                                        int32_t& token_index) const {
  size_t best = 0;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    auto it = edges.find((static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(text[i]));
    if (it == edges.end()) break;
    node = it->second;
    if (nodes[node] >= 0) {
      best = i + 1 - pos;
      token_index = nodes[node];
    }
  }
  return best;
}

absl::Status AddedVocabulary::Build(std::vector<AddedToken> tokens, const Normalizer* normalizer) {
  tokens_ = std::move(tokens);
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const AddedToken& t = tokens_[i];
    by_id_[t.id] = i;
    by_content_.emplace(t.content, t.id);
    if (t.normalized) {
      std::string content = t.content;
      if (normalizer) RETURN_IF_ERROR(normalizer->Normalize(content));
      normalized_.Insert(content, static_cast<int32_t>(i));
    } else {
      raw_.Insert(t.content, static_cast<int32_t>(i));
    }
  }
  return absl::OkStatus();
}

void AddedVocabulary::Split(std::string_view text, bool normalized_set,
                            std::vector<Segment>& out) const {
  SplitWith(normalized_set ? normalized_ : raw_, text, out);
}

// Mirrors HF AddedVocabulary::find_matches, including single_word / lstrip / rstrip.
void AddedVocabulary::SplitWith(const Trie& trie, std::string_view text,
                                std::vector<Segment>& out) const {
  size_t start_offset = 0;
  size_t pos = 0;
  if (trie.has_tokens) {
    while (pos < text.size()) {
      if (!trie.first_byte[static_cast<uint8_t>(text[pos])]) {
        ++pos;
        continue;
      }
      int32_t ti = -1;
      const size_t len = trie.LongestAt(text, pos, ti);
      if (len == 0) {
        ++pos;
        continue;
      }
      const AddedToken& t = tokens_[ti];
      size_t start = pos, stop = pos + len;
      pos = stop;  // the next search resumes after this match even if it is discarded
      if (t.single_word) {
        const bool start_space = start == 0 || !IsAlnum(LastChar(text.substr(0, start)));
        size_t k = stop;
        const bool stop_space = stop == text.size() || !IsAlnum(DecodeUtf8(text, k));
        if (!start_space || !stop_space) continue;
      }
      if (t.lstrip) {
        size_t s = start;
        while (s > 0) {
          size_t p = s - 1;
          while (p > 0 && (static_cast<uint8_t>(text[p]) & 0xC0) == 0x80) --p;
          size_t q = p;
          if (!IsUnicodeWhitespace(DecodeUtf8(text, q))) break;
          s = p;
        }
        start = std::max(s, start_offset);
      }
      if (t.rstrip) {
        while (stop < text.size()) {
          size_t q = stop;
          if (!IsUnicodeWhitespace(DecodeUtf8(text, q))) break;
          stop = q;
        }
        pos = std::max(pos, stop);
      }
      if (start_offset < start) out.push_back({start_offset, start, -1});
      out.push_back({start, stop, t.id});
      start_offset = stop;
    }
  }
  if (start_offset != text.size()) out.push_back({start_offset, text.size(), -1});
}

const AddedToken* AddedVocabulary::FindById(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

std::optional<int32_t> AddedVocabulary::FindByContent(std::string_view content) const {
  auto it = by_content_.find(AbslView(content));
  if (it == by_content_.end()) return std::nullopt;
  return it->second;
}

bool AddedVocabulary::IsSpecialId(int32_t id) const {
  const AddedToken* t = FindById(id);
  return t && t->special;
}

}  // namespace muse::tokenizer
