#include "benchmarks/bench/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace muse::bench {

const char* StatusCodeName(int code) {
  static const char* kNames[] = {"OK",
                                 "CANCELLED",
                                 "UNKNOWN",
                                 "INVALID_ARGUMENT",
                                 "DEADLINE_EXCEEDED",
                                 "NOT_FOUND",
                                 "ALREADY_EXISTS",
                                 "PERMISSION_DENIED",
                                 "RESOURCE_EXHAUSTED",
                                 "FAILED_PRECONDITION",
                                 "ABORTED",
                                 "OUT_OF_RANGE",
                                 "UNIMPLEMENTED",
                                 "INTERNAL",
                                 "UNAVAILABLE",
                                 "DATA_LOSS",
                                 "UNAUTHENTICATED"};
  return code >= 0 && code <= 16 ? kNames[code] : "UNKNOWN_CODE";
}

absl::StatusOr<Slo> ParseSlo(absl::string_view spec) {
  Slo slo;
  for (absl::string_view item : absl::StrSplit(spec, absl::ByAnyChar(", "), absl::SkipEmpty())) {
    std::vector<absl::string_view> kv = absl::StrSplit(item, ':');
    double v = 0;
    if (kv.size() != 2 || !absl::SimpleAtod(kv[1], &v) || v < 0) {
      return absl::InvalidArgumentError(absl::StrCat("--slo: expected NAME:MS, got '", item, "'"));
    }
    if (kv[0] == "ttft") {
      slo.ttft_ms = v;
    } else if (kv[0] == "tpot") {
      slo.tpot_ms = v;
    } else if (kv[0] == "e2el") {
      slo.e2el_ms = v;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--slo: unknown metric '", kv[0], "' (ttft, tpot, e2el)"));
    }
  }
  return slo;
}

double Percentile(const std::vector<double>& sorted, double q) {
  // numpy 'linear': virtual index (n - 1) * q / 100, interpolate between its neighbours.
  const double pos = (static_cast<double>(sorted.size()) - 1) * q / 100.0;
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

Distribution Describe(std::vector<double> values) {
  Distribution d;
  d.count = values.size();
  if (values.empty()) return d;
  std::sort(values.begin(), values.end());
  const double n = static_cast<double>(values.size());
  d.mean = std::accumulate(values.begin(), values.end(), 0.0) / n;
  double ss = 0;
  for (double v : values) ss += (v - d.mean) * (v - d.mean);
  d.std = std::sqrt(ss / n);
  d.median = Percentile(values, 50);
  d.p90 = Percentile(values, 90);
  d.p99 = Percentile(values, 99);
  d.max = values.back();
  return d;
}

namespace {

std::vector<double> ToMs(const std::vector<double>& s) {
  std::vector<double> ms(s.size());
  for (size_t i = 0; i < s.size(); ++i) ms[i] = s[i] * 1000.0;
  return ms;
}

}  // namespace

Summary Summarize(const std::vector<RequestRecord>& records, double duration_s, const Slo& slo) {
  Summary s;
  s.duration_s = duration_s;
  std::vector<double> ttfts, tpots, all_tpots, itls, e2els;
  for (const RequestRecord& r : records) {
    if (!r.success()) {
      ++s.failed;
      ++s.errors[StatusCodeName(r.status_code)];
      continue;
    }
    ++s.completed;
    s.total_input_tokens += r.prompt_tokens;
    s.total_cached_tokens += r.cached_tokens;
    s.total_output_tokens += r.output_tokens;
    double tpot = 0;
    if (r.output_tokens > 1) {
      tpot = (r.e2e_s - r.ttft_s) / static_cast<double>(r.output_tokens - 1);
      tpots.push_back(tpot);
    }
    all_tpots.push_back(tpot);
    itls.insert(itls.end(), r.itl_s.begin(), r.itl_s.end());
    ttfts.push_back(r.ttft_s);
    e2els.push_back(r.e2e_s);
  }
  if (duration_s > 0) {
    s.request_throughput = static_cast<double>(s.completed) / duration_s;
    s.input_throughput = static_cast<double>(s.total_input_tokens) / duration_s;
    s.output_throughput = static_cast<double>(s.total_output_tokens) / duration_s;
    s.total_token_throughput =
        static_cast<double>(s.total_input_tokens + s.total_output_tokens) / duration_s;
  }
  if (!slo.empty()) {
    for (size_t i = 0; i < ttfts.size(); ++i) {
      const bool good = (!slo.ttft_ms || ttfts[i] * 1000.0 <= *slo.ttft_ms) &&
                        (!slo.tpot_ms || all_tpots[i] * 1000.0 <= *slo.tpot_ms) &&
                        (!slo.e2el_ms || e2els[i] * 1000.0 <= *slo.e2el_ms);
      if (good) ++s.good_completed;
    }
    s.request_goodput = duration_s > 0 ? static_cast<double>(s.good_completed) / duration_s : 0.0;
  }
  s.ttft_ms = Describe(ToMs(ttfts));
  s.tpot_ms = Describe(ToMs(tpots));
  s.itl_ms = Describe(ToMs(itls));
  s.e2el_ms = Describe(ToMs(e2els));

  for (const auto& [t, tput] : OutputThroughputOverTime(records, 1.0)) {
    s.peak_output_throughput = std::max(s.peak_output_throughput, tput);
  }
  // Peak in-flight requests: sweep over send (+1) and close (-1) events; closes sort first.
  std::vector<std::pair<double, int>> events;
  for (const RequestRecord& r : records) {
    events.emplace_back(r.start_s, +1);
    events.emplace_back(r.end_s, -1);
  }
  std::sort(events.begin(), events.end());
  int64_t in_flight = 0;
  for (const auto& e : events) {
    in_flight += e.second;
    s.peak_concurrency = std::max(s.peak_concurrency, in_flight);
  }
  return s;
}

std::vector<std::pair<double, double>> OutputThroughputOverTime(
    const std::vector<RequestRecord>& records, double bin_s) {
  double last = 0;
  for (const RequestRecord& r : records) {
    if (!r.chunk_s.empty()) last = std::max(last, r.chunk_s.back());
  }
  std::vector<double> tokens(static_cast<size_t>(std::floor(last / bin_s)) + 1, 0.0);
  bool any = false;
  for (const RequestRecord& r : records) {
    for (size_t i = 0; i < r.chunk_s.size(); ++i) {
      tokens[static_cast<size_t>(std::floor(r.chunk_s[i] / bin_s))] += r.chunk_tokens[i];
      any = true;
    }
  }
  std::vector<std::pair<double, double>> out;
  if (!any) return out;
  for (size_t i = 0; i < tokens.size(); ++i) out.emplace_back(i * bin_s, tokens[i] / bin_s);
  return out;
}

}  // namespace muse::bench
