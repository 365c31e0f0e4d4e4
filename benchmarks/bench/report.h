// Benchmark outputs: vLLM-style summary table, the result JSON (config, summaries, every
// request's timeline) and a self-contained HTML report with inline SVG plots.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "benchmarks/bench/load_runner.h"
#include "benchmarks/bench/metrics.h"
#include "nlohmann/json.hpp"

namespace muse::bench {

struct BenchRun {
  std::string backend = "grpc";  // BackendName()
  double request_rate = 0;       // inf allowed
  double burstiness = 1;
  int64_t max_concurrency = 0;
  RunResult result;
  Summary summary;
  std::vector<std::pair<std::string, Summary>> by_priority;  // when a priority mix is used
};

// Fills summary and by_priority from result.
void Finalize(BenchRun* run, const Slo& slo);

std::string FormatSummary(const BenchRun& run, const Slo& slo);
// With runs of gRPC and an HTTP backend at the same rate: output tok/s of each and the HTTP
// path's loss vs gRPC, (1 - http / grpc) x 100 %; "" when there is nothing to compare.
std::string FormatBackendComparison(const std::vector<BenchRun>& runs);
nlohmann::json BackendComparisonJson(const std::vector<BenchRun>& runs);
nlohmann::json SummaryJson(const Summary& s);
nlohmann::json ResultJson(const nlohmann::json& config, const std::vector<BenchRun>& runs,
                          const Slo& slo);
absl::Status WriteFile(const std::string& path, const std::string& text);

// Self-contained HTML: CDFs of TTFT/TPOT/E2E, output throughput over time per run; with more
// than one run, TTFT/TPOT p50/p99 and throughput against request rate.
std::string HtmlReport(const nlohmann::json& config, const std::vector<BenchRun>& runs);

}  // namespace muse::bench
