#include "src/server/auth.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "src/common/file_util.h"

namespace muse::server {
namespace {

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  volatile unsigned char diff = a.size() != b.size() ? 1 : 0;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const auto x = static_cast<unsigned char>(i < a.size() ? a[i] : 0);
    const auto y = static_cast<unsigned char>(i < b.size() ? b[i] : 0);
    diff = diff | static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

absl::Status OverLimit(const std::string& message, double seconds) {
  absl::Status st = absl::ResourceExhaustedError(message);
  const int64_t whole = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(seconds)));
  st.SetPayload(kRetryAfterPayload, absl::Cord(std::to_string(whole)));
  return st;
}

}  // namespace

absl::StatusOr<ApiKeys> ApiKeys::FromJson(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("api keys: expected a JSON object {\"<key>\": {...}}");
  }
  ApiKeys keys;
  for (auto& [key, v] : j.items()) {
    if (key.empty() || !v.is_object()) {
      return absl::InvalidArgumentError("api keys: every entry must be \"<key>\": {object}");
    }
    const std::string where = absl::StrCat("api keys: entry of tenant ", v.value("tenant", "?"));
    Tenant t;
    if (!v.contains("tenant") || !v["tenant"].is_string() ||
        v["tenant"].get<std::string>().empty()) {
      return absl::InvalidArgumentError("api keys: every key needs a non-empty \"tenant\"");
    }
    t.name = v["tenant"].get<std::string>();
    const std::string prio = v.value("priority", std::string("interactive"));
    if (prio == "interactive") {
      t.max_priority = engine::Priority::kInteractive;
    } else if (prio == "batch") {
      t.max_priority = engine::Priority::kBatch;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": priority must be interactive or batch"));
    }
    for (auto [name, dst] : {std::pair{"requests_per_minute", &t.requests_per_minute},
                             std::pair{"tokens_per_minute", &t.tokens_per_minute}}) {
      if (!v.contains(name)) continue;
      if (!v[name].is_number() || v[name].get<double>() < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": ", name, " must be a number >= 0"));
      }
      *dst = v[name].get<double>();
    }
    keys.keys_[key] = std::move(t);
  }
  if (keys.keys_.empty()) return absl::InvalidArgumentError("api keys: no keys defined");
  return keys;
}

absl::StatusOr<ApiKeys> ApiKeys::FromFile(const std::string& path) {
  auto text = muse::ReadFile(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("api keys file ", text.status().message()));
  }
  auto keys = FromJson(*text);
  if (!keys.ok())
    return absl::Status(keys.status().code(), absl::StrCat(path, ": ", keys.status().message()));
  return keys;
}

absl::StatusOr<const Tenant*> ApiKeys::Authenticate(
    std::optional<std::string> authorization) const {
  if (!authorization) {
    return absl::UnauthenticatedError("missing 'authorization: Bearer <key>' metadata");
  }
  absl::string_view v = *authorization;
  if (!absl::ConsumePrefix(&v, "Bearer ") && !absl::ConsumePrefix(&v, "bearer ")) {
    return absl::UnauthenticatedError("authorization metadata must be 'Bearer <key>'");
  }
  // Every key is compared, each in time that depends only on the lengths: no early exit tells a
  // caller how much of a guess was right.
  const absl::string_view presented = absl::StripAsciiWhitespace(v);
  const Tenant* found = nullptr;
  for (const auto& [key, tenant] : keys_) {
    if (ConstantTimeEquals(key, presented)) found = &tenant;
  }
  if (found == nullptr) return absl::UnauthenticatedError("invalid API key");
  return found;
}

void TenantLimiter::Refill(const Tenant& t, Bucket& b, absl::Time now) {
  if (b.last == absl::InfinitePast()) {
    b.requests = t.requests_per_minute;
    b.tokens = t.tokens_per_minute;
  } else {
    const double minutes = absl::ToDoubleSeconds(now - b.last) / 60.0;
    if (minutes > 0) {
      b.requests = std::min(t.requests_per_minute, b.requests + minutes * t.requests_per_minute);
      b.tokens = std::min(t.tokens_per_minute, b.tokens + minutes * t.tokens_per_minute);
    }
  }
  b.last = now;
}

absl::Status TenantLimiter::Admit(const Tenant& t, int64_t prompt_tokens, absl::Time now) {
  std::lock_guard lock(mu_);
  Bucket& b = buckets_[t.name];
  Refill(t, b, now);
  TenantUsage& u = usage_[t.name];
  if (t.requests_per_minute > 0 && b.requests < 1) {
    ++u.rejected;
    return OverLimit(absl::StrCat("tenant '", t.name, "' is over its limit of ",
                                  t.requests_per_minute, " requests/min"),
                     (1 - b.requests) * 60 / t.requests_per_minute);
  }
  // A prompt larger than a whole minute's budget is admitted when the bucket is full, so big
  // prompts are slow rather than impossible.
  if (t.tokens_per_minute > 0 &&
      b.tokens < std::min<double>(static_cast<double>(prompt_tokens), t.tokens_per_minute)) {
    ++u.rejected;
    const double need = std::min<double>(static_cast<double>(prompt_tokens), t.tokens_per_minute);
    return OverLimit(absl::StrCat("tenant '", t.name, "' is over its limit of ",
                                  t.tokens_per_minute, " tokens/min"),
                     (need - b.tokens) * 60 / t.tokens_per_minute);
  }
  if (t.requests_per_minute > 0) b.requests -= 1;
  if (t.tokens_per_minute > 0) b.tokens -= static_cast<double>(prompt_tokens);
  ++u.requests;
  u.prompt_tokens += prompt_tokens;
  return absl::OkStatus();
}

void TenantLimiter::Finish(const Tenant& t, int64_t completion_tokens, absl::Time now) {
  std::lock_guard lock(mu_);
  Bucket& b = buckets_[t.name];
  Refill(t, b, now);
  if (t.tokens_per_minute > 0) b.tokens -= static_cast<double>(completion_tokens);
  usage_[t.name].completion_tokens += completion_tokens;
}

std::map<std::string, TenantUsage> TenantLimiter::Usage() const {
  std::lock_guard lock(mu_);
  return usage_;
}

}  // namespace muse::server
