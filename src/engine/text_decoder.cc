#include "src/engine/text_decoder.h"

#include <algorithm>

namespace muse::engine {

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (const auto& s : stops_) max_len_ = std::max(max_len_, s.size());
}

StopStringMatcher::Result StopStringMatcher::Append(std::string_view text) {
  Result r;
  pending_.append(text);
  if (stops_.empty()) {
    r.text.swap(pending_);
    return r;
  }
  // Earliest match wins; pending_ holds less than max_len_ old bytes, so no match is missed.
  size_t best = std::string::npos;
  for (const auto& s : stops_) {
    size_t pos = pending_.find(s);
    if (pos != std::string::npos && pos < best) {
      best = pos;
      r.matched = s;
    }
  }
  if (best != std::string::npos) {
    r.text = pending_.substr(0, best);
    r.stopped = true;
    pending_.clear();
    return r;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  const size_t max_hold = std::min(pending_.size(), max_len_ - 1);
  for (size_t len = max_hold; len > 0 && hold == 0; --len) {
    std::string_view tail(pending_.data() + pending_.size() - len, len);
    for (const auto& s : stops_) {
      if (s.size() > len && std::string_view(s).substr(0, len) == tail) {
        hold = len;
        break;
      }
    }
  }
  r.text = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return r;
}

std::string StopStringMatcher::Flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace muse::engine
