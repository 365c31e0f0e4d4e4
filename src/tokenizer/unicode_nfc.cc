#include "src/tokenizer/unicode_nfc.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "src/tokenizer/utf8.h"

namespace muse::tokenizer {
namespace {

struct CccEntry {
  uint32_t cp;
  uint8_t ccc;
};
struct DecompEntry {
  uint32_t cp;
  uint32_t offset;
  uint32_t len;
};
struct ComposeEntry {
  uint32_t first;
  uint32_t second;
  uint32_t composite;
};
struct RangeEntry {
  uint32_t lo;
  uint32_t hi;
};

#include "src/tokenizer/unicode_nfc_data.inc"

constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount;
constexpr uint32_t kSCount = kLCount * kNCount;

bool NeedsCheck(uint32_t cp) {
  if (cp < 0x300) return false;
  auto it = std::upper_bound(std::begin(kNfcCheck), std::end(kNfcCheck), cp,
                             [](uint32_t v, const RangeEntry& r) { return v < r.lo; });
  return it != std::begin(kNfcCheck) && cp <= (it - 1)->hi;
}

uint8_t Ccc(uint32_t cp) {
  if (cp < 0x300) return 0;
  auto it = std::lower_bound(std::begin(kCcc), std::end(kCcc), cp,
                             [](const CccEntry& e, uint32_t v) { return e.cp < v; });
  return it != std::end(kCcc) && it->cp == cp ? it->ccc : 0;
}

void Decompose(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  auto it = std::lower_bound(std::begin(kDecomp), std::end(kDecomp), cp,
                             [](const DecompEntry& e, uint32_t v) { return e.cp < v; });
  if (it != std::end(kDecomp) && it->cp == cp) {
    out.insert(out.end(), kDecompData + it->offset, kDecompData + it->offset + it->len);
  } else {
    out.push_back(cp);
  }
}

// Primary composite of (a, b), or 0.
uint32_t Compose(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  auto it = std::lower_bound(std::begin(kCompose), std::end(kCompose), std::pair{a, b},
                             [](const ComposeEntry& e, const std::pair<uint32_t, uint32_t>& v) {
                               return e.first != v.first ? e.first < v.first : e.second < v.second;
                             });
  return it != std::end(kCompose) && it->first == a && it->second == b ? it->composite : 0;
}

}  // namespace

bool IsTriviallyNfc(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    // Every code point below U+0300 is NFC-inert; its UTF-8 lead bytes are < 0xCC.
    if (static_cast<uint8_t>(s[i]) < 0xCC) {
      i += Utf8SeqLen(static_cast<uint8_t>(s[i]));
      continue;
    }
    if (NeedsCheck(DecodeUtf8(s, i))) return false;
  }
  return true;
}

std::string ToNfc(std::string_view s) {
  if (IsTriviallyNfc(s)) return std::string(s);
  std::vector<uint32_t> d;
  d.reserve(s.size());
  for (size_t i = 0; i < s.size();) Decompose(DecodeUtf8(s, i), d);
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < d.size();) {
    if (Ccc(d[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && Ccc(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + i, d.begin() + j,
                     [](uint32_t a, uint32_t b) { return Ccc(a) < Ccc(b); });
    i = j;
  }
  // Canonical composition.
  std::vector<uint32_t> out;
  out.reserve(d.size());
  size_t starter = static_cast<size_t>(-1);
  uint8_t last_ccc = 0;
  for (uint32_t c : d) {
    const uint8_t cc = Ccc(c);
    if (starter != static_cast<size_t>(-1)) {
      const bool adjacent = out.size() - 1 == starter;
      if (adjacent || (last_ccc != 0 && last_ccc < cc)) {
        if (uint32_t comp = Compose(out[starter], c)) {
          out[starter] = comp;
          continue;
        }
      }
    }
    if (cc == 0) starter = out.size();
    last_ccc = cc;
    out.push_back(c);
  }
  std::string r;
  r.reserve(s.size());
  for (uint32_t c : out) AppendUtf8(c, r);
  return r;
}

}  // namespace muse::tokenizer
