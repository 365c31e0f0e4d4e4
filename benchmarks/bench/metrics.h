// Serving metrics with vLLM's benchmark_serving definitions (calculate_metrics):
//  - TTFT per successful request; TPOT = (E2E - TTFT) / (output_tokens - 1) for requests with
//    more than one output token; ITL = every gap between token-bearing chunks, pooled over
//    requests; E2E = last chunk - send.
//  - Throughputs divide by the benchmark duration (first send to last completion).
//  - Goodput: a successful request is good when every given SLO holds (value <= SLO); TPOT of a
//    request with <= 1 output token counts as 0 there, as in vLLM.
//  - Percentiles use numpy's default linear interpolation; std is numpy's population std.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "benchmarks/bench/request_record.h"

namespace muse::bench {

struct Slo {
  std::optional<double> ttft_ms, tpot_ms, e2el_ms;
  bool empty() const { return !ttft_ms && !tpot_ms && !e2el_ms; }
};
// "ttft:500,tpot:50,e2el:2000" (vLLM's --goodput takes the same keys, space separated; both work).
absl::StatusOr<Slo> ParseSlo(absl::string_view spec);

// numpy.percentile(values, q) with the default 'linear' method; `sorted` ascending, non-empty.
double Percentile(const std::vector<double>& sorted, double q);

struct Distribution {
  size_t count = 0;
  double mean = 0, std = 0, median = 0, p90 = 0, p99 = 0, max = 0;
};
// All zeros for an empty input (vLLM's `np.mean(x or 0)`).
Distribution Describe(std::vector<double> values);

struct Summary {
  int64_t completed = 0;
  int64_t failed = 0;
  double duration_s = 0;
  int64_t total_input_tokens = 0;
  int64_t total_cached_tokens = 0;
  int64_t total_output_tokens = 0;
  double request_throughput = 0;          // req/s
  double input_throughput = 0;            // tok/s
  double output_throughput = 0;           // tok/s
  double total_token_throughput = 0;      // tok/s
  std::optional<double> request_goodput;  // req/s, only with an SLO
  int64_t good_completed = 0;
  double peak_output_throughput = 0;  // max over 1 s bins of output tokens
  int64_t peak_concurrency = 0;       // max requests in flight
  Distribution ttft_ms, tpot_ms, itl_ms, e2el_ms;
  std::map<std::string, int64_t> errors;  // status code name -> count
};

Summary Summarize(const std::vector<RequestRecord>& records, double duration_s, const Slo& slo);

// Output tokens per second over time: bins of `bin_s` from 0 to the last chunk; each entry is
// (bin start s, tokens / bin_s).
std::vector<std::pair<double, double>> OutputThroughputOverTime(
    const std::vector<RequestRecord>& records, double bin_s);

}  // namespace muse::bench
