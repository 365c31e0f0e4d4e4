// API keys and per-tenant limits. The keys file (configs/api_keys.example.json) maps
//   "<key>": {"tenant": "...", "priority": "interactive"|"batch", "requests_per_minute": N,
//             "tokens_per_minute": N}        (0 or absent = unlimited)
// `priority` is the highest class the key may ask for. Limits are token buckets per tenant
// (capacity = one minute's worth, refilled continuously): a request takes one request token and
// its prompt tokens up front; completion tokens are charged when it finishes and may drive the
// bucket negative, which rejects the tenant's next requests until it refills. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "src/common/status.h"
#include "src/engine/request.h"

namespace muse::server {

struct Tenant {
  std::string name;
  engine::Priority max_priority = engine::Priority::kInteractive;
  double requests_per_minute = 0;  // 0 = unlimited
  double tokens_per_minute = 0;
};

struct TenantUsage {
  int64_t requests = 0;  // admitted
  int64_t rejected = 0;  // over the rate limit
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

class ApiKeys {
 public:
  static absl::StatusOr<ApiKeys> FromJson(const std::string& json_text);
  static absl::StatusOr<ApiKeys> FromFile(const std::string& path);

  // `authorization` is the raw metadata value ("Bearer <key>"). Unauthenticated when missing,
  // malformed or unknown; never echoes the key.
  absl::StatusOr<const Tenant*> Authenticate(std::optional<std::string> authorization) const;
  size_t size() const { return keys_.size(); }

 private:
  absl::flat_hash_map<std::string, Tenant> keys_;
};

// Payload of a TenantLimiter refusal: whole seconds until the bucket holds enough again (the HTTP
// face sends it as Retry-After).
inline constexpr char kRetryAfterPayload[] = "muse.retry_after_seconds";

class TenantLimiter {
 public:
  // Takes one request and `prompt_tokens` from the tenant's buckets, or ResourceExhausted (with
  // a kRetryAfterPayload).
  absl::Status Admit(const Tenant& tenant, int64_t prompt_tokens, absl::Time now);
  // Charges the completion tokens of a finished request.
  void Finish(const Tenant& tenant, int64_t completion_tokens, absl::Time now);
  std::map<std::string, TenantUsage> Usage() const;

 private:
  struct Bucket {
    double requests = 0, tokens = 0;
    absl::Time last = absl::InfinitePast();
  };
  void Refill(const Tenant& tenant, Bucket& b, absl::Time now);

  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_;
  std::map<std::string, TenantUsage> usage_;
};

}  // namespace muse::server
