// What the soak harness reads about a running muse-server from outside: its Prometheus /metrics
// (plain HTTP GET), its resident set size (/proc/<pid>/status), the pid listening on a TCP port
// (/proc/net/tcp{,6} + /proc/<pid>/fd), and error-level lines of its log file.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace muse::bench {

// One scrape: series text exactly as exposed (`name{label="v",...}`) -> value.
using PromSamples = std::map<std::string, double>;

absl::StatusOr<PromSamples> ScrapeMetrics(const std::string& host, int port, double timeout_s = 5);
// The value of `series`, or `fallback` when the scrape has none.
double SampleOr(const PromSamples& s, const std::string& series, double fallback = 0);
// muse_requests_total summed over `methods`, by code ("OK", "CANCELLED", ...).
std::map<std::string, int64_t> RequestCodes(const PromSamples& s,
                                            const std::vector<std::string>& methods);

// VmRSS of `pid` in bytes.
absl::StatusOr<int64_t> ProcessRssBytes(int64_t pid);
// The process that holds a listening TCP socket on `port` (any address).
absl::StatusOr<int64_t> PidListeningOn(int port);

struct LogScan {
  int64_t lines = 0;                    // lines read (from `offset`)
  int64_t expected_errors = 0;          // error-level lines matching an expected substring
  std::vector<std::string> unexpected;  // the other error-level lines (first 20)
  int64_t unexpected_count = 0;
  int64_t end_offset = 0;  // file size when read
};
// Error-level lines from byte `offset` on: spdlog's `<time> E ...` / `<time> C ...` (muse's
// pattern), gRPC/absl's `E1206 12:00:00.000000 ...`, and sanitizer reports (ASan, LSan, TSan,
// UBSan).
absl::StatusOr<LogScan> ScanLogErrors(const std::string& path, int64_t offset,
                                      const std::vector<std::string>& expected);

}  // namespace muse::bench
