#include "src/tokenizer/stop_string_matcher.h"

#include <algorithm>

namespace muse::tokenizer {

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops) {
  // Empty stops would match everywhere; they carry no meaning.
  for (auto& s : stops) {
    if (!s.empty()) stops_.push_back(std::move(s));
  }
}

size_t StopStringMatcher::HoldLength() const {
  size_t best = 0;
  for (const std::string& s : stops_) {
    const size_t max_k = std::min(held_.size(), s.size() - 1);
    for (size_t k = max_k; k > best; --k) {
      if (std::string_view(held_).substr(held_.size() - k) == std::string_view(s).substr(0, k)) {
        best = k;
        break;
      }
    }
  }
  return best;
}

StopStringMatcher::Result StopStringMatcher::Feed(std::string_view chunk) {
  Result r;
  if (stopped_) return r;
  // Only the held tail can combine with the new chunk, so search from where a match could start.
  const size_t search_from = held_.size();
  held_.append(chunk);
  size_t best_pos = std::string::npos, best_stop = 0;
  for (size_t i = 0; i < stops_.size(); ++i) {
    const size_t from =
        search_from >= stops_[i].size() - 1 ? search_from - (stops_[i].size() - 1) : 0;
    const size_t pos = held_.find(stops_[i], from);
    // Earliest match wins; on the same position the first listed stop.
    if (pos != std::string::npos && pos < best_pos) {
      best_pos = pos;
      best_stop = i;
    }
  }
  if (best_pos != std::string::npos) {
    r.text = held_.substr(0, best_pos);
    r.stop_index = best_stop;
    stopped_ = best_stop;
    held_.clear();
    return r;
  }
  const size_t hold = HoldLength();
  r.text = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return r;
}

std::string StopStringMatcher::Flush() {
  if (stopped_) return std::string();
  std::string out = std::move(held_);
  held_.clear();
  return out;
}

}  // namespace muse::tokenizer
