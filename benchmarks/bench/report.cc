#include "benchmarks/bench/report.h"

#include <cmath>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace muse::bench {
namespace {

std::string Center(const std::string& s, char fill, size_t n = 50) {
  if (s.size() >= n) return s;
  const size_t left = (n - s.size()) / 2;
  return std::string(left, fill) + s + std::string(n - s.size() - left, fill);
}

void Row(std::string* out, const std::string& name, const std::string& value) {
  absl::StrAppendFormat(out, "%-40s %-10s\n", name, value);
}
void RowF(std::string* out, const std::string& name, double v) {
  Row(out, name, absl::StrFormat("%.2f", v));
}
void RowI(std::string* out, const std::string& name, int64_t v) { Row(out, name, absl::StrCat(v)); }

void DistRows(std::string* out, const char* header, const char* key, const Distribution& d) {
  *out += Center(header, '-') + "\n";
  RowF(out, absl::StrCat("Mean ", key, " (ms):"), d.mean);
  RowF(out, absl::StrCat("Median ", key, " (ms):"), d.median);
  RowF(out, absl::StrCat("P90 ", key, " (ms):"), d.p90);
  RowF(out, absl::StrCat("P99 ", key, " (ms):"), d.p99);
  RowF(out, absl::StrCat("Max ", key, " (ms):"), d.max);
}

nlohmann::json DistJson(const Distribution& d) {
  return {{"count", d.count}, {"mean", d.mean}, {"std", d.std}, {"median", d.median},
          {"p90", d.p90},     {"p99", d.p99},   {"max", d.max}};
}

nlohmann::json Num(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json("inf");
}

}  // namespace

void Finalize(BenchRun* run, const Slo& slo) {
  run->summary = Summarize(run->result.records, run->result.duration_s, slo);
  std::map<std::string, std::vector<RequestRecord>> groups;
  for (const RequestRecord& r : run->result.records) {
    if (!r.priority.empty()) groups[r.priority].push_back(r);
  }
  run->by_priority.clear();
  for (auto& [name, recs] : groups) {
    run->by_priority.emplace_back(name, Summarize(recs, run->result.duration_s, slo));
  }
}

nlohmann::json BackendComparisonJson(const std::vector<BenchRun>& runs) {
  nlohmann::json out = nlohmann::json::array();
  for (const BenchRun& g : runs) {
    if (g.backend != "grpc") continue;
    for (const BenchRun& h : runs) {
      if (h.backend == "grpc" || h.request_rate != g.request_rate) continue;
      const double grpc = g.summary.output_throughput, http = h.summary.output_throughput;
      out.push_back({{"backend", h.backend},
                     {"request_rate", Num(g.request_rate)},
                     {"grpc_output_tok_s", grpc},
                     {"http_output_tok_s", http},
                     {"overhead_pct", grpc > 0 ? (1 - http / grpc) * 100 : 0.0},
                     {"grpc_mean_tpot_ms", g.summary.tpot_ms.mean},
                     {"http_mean_tpot_ms", h.summary.tpot_ms.mean}});
    }
  }
  return out;
}

std::string FormatBackendComparison(const std::vector<BenchRun>& runs) {
  const nlohmann::json c = BackendComparisonJson(runs);
  if (c.empty()) return "";
  std::string out = Center(" HTTP vs gRPC ", '=') + "\n";
  for (const auto& x : c) {
    const std::string rate = x["request_rate"].is_string()
                                 ? "inf"
                                 : absl::StrFormat("%g", x["request_rate"].get<double>());
    Row(&out, absl::StrCat(x["backend"].get<std::string>(), " @ rate ", rate, ":"),
        absl::StrFormat("%.1f vs %.1f tok/s (%+.2f %% loss)", x["http_output_tok_s"].get<double>(),
                        x["grpc_output_tok_s"].get<double>(), x["overhead_pct"].get<double>()));
  }
  out += std::string(50, '=') + "\n";
  return out;
}

std::string FormatSummary(const BenchRun& run, const Slo& slo) {
  const Summary& s = run.summary;
  std::string out = Center(" Serving Benchmark Result ", '=') + "\n";
  Row(&out, "Backend:", run.backend);
  Row(&out, "Request rate (req/s):",
      std::isinf(run.request_rate) ? "inf" : absl::StrFormat("%.2f", run.request_rate));
  if (run.max_concurrency > 0) RowI(&out, "Maximum request concurrency:", run.max_concurrency);
  RowI(&out, "Successful requests:", s.completed);
  RowI(&out, "Failed requests:", s.failed);
  for (const auto& [code, n] : s.errors) RowI(&out, absl::StrCat("  ", code, ":"), n);
  RowF(&out, "Benchmark duration (s):", s.duration_s);
  RowI(&out, "Total input tokens:", s.total_input_tokens);
  RowI(&out, "Total cached input tokens:", s.total_cached_tokens);
  RowI(&out, "Total generated tokens:", s.total_output_tokens);
  RowF(&out, "Request throughput (req/s):", s.request_throughput);
  if (s.request_goodput) RowF(&out, "Request goodput (req/s):", *s.request_goodput);
  RowF(&out, "Input token throughput (tok/s):", s.input_throughput);
  RowF(&out, "Output token throughput (tok/s):", s.output_throughput);
  RowF(&out, "Peak output token throughput (tok/s):", s.peak_output_throughput);
  RowI(&out, "Peak concurrent requests:", s.peak_concurrency);
  RowF(&out, "Total Token throughput (tok/s):", s.total_token_throughput);
  DistRows(&out, "Time to First Token", "TTFT", s.ttft_ms);
  DistRows(&out, "Time per Output Token (excl. 1st token)", "TPOT", s.tpot_ms);
  DistRows(&out, "Inter-token Latency", "ITL", s.itl_ms);
  DistRows(&out, "End-to-end Latency", "E2EL", s.e2el_ms);
  for (const auto& [name, p] : run.by_priority) {
    out += Center(absl::StrCat(" Priority ", name, " "), '-') + "\n";
    RowI(&out, "Successful requests:", p.completed);
    if (p.request_goodput) RowF(&out, "Request goodput (req/s):", *p.request_goodput);
    RowF(&out, "Mean TTFT (ms):", p.ttft_ms.mean);
    RowF(&out, "P99 TTFT (ms):", p.ttft_ms.p99);
    RowF(&out, "Mean TPOT (ms):", p.tpot_ms.mean);
    RowF(&out, "P99 TPOT (ms):", p.tpot_ms.p99);
  }
  (void)slo;
  out += std::string(50, '=') + "\n";
  return out;
}

nlohmann::json SummaryJson(const Summary& s) {
  nlohmann::json j = {{"completed", s.completed},
                      {"failed", s.failed},
                      {"duration", s.duration_s},
                      {"total_input_tokens", s.total_input_tokens},
                      {"total_cached_tokens", s.total_cached_tokens},
                      {"total_output_tokens", s.total_output_tokens},
                      {"request_throughput", s.request_throughput},
                      {"input_throughput", s.input_throughput},
                      {"output_throughput", s.output_throughput},
                      {"total_token_throughput", s.total_token_throughput},
                      {"max_output_tokens_per_s", s.peak_output_throughput},
                      {"max_concurrent_requests", s.peak_concurrency},
                      {"errors", s.errors}};
  j["distributions_ms"] = {{"ttft", DistJson(s.ttft_ms)},
                           {"tpot", DistJson(s.tpot_ms)},
                           {"itl", DistJson(s.itl_ms)},
                           {"e2el", DistJson(s.e2el_ms)}};
  if (s.request_goodput) {
    j["request_goodput"] = *s.request_goodput;
    j["good_completed"] = s.good_completed;
  }
  for (const auto& [name, d] : {std::pair{"ttft", &s.ttft_ms}, std::pair{"tpot", &s.tpot_ms},
                                std::pair{"itl", &s.itl_ms}, std::pair{"e2el", &s.e2el_ms}}) {
    // vLLM's flat keys (mean_ttft_ms, p99_ttft_ms, ...) plus a nested block.
    j[absl::StrCat("mean_", name, "_ms")] = d->mean;
    j[absl::StrCat("median_", name, "_ms")] = d->median;
    j[absl::StrCat("std_", name, "_ms")] = d->std;
    j[absl::StrCat("p90_", name, "_ms")] = d->p90;
    j[absl::StrCat("p99_", name, "_ms")] = d->p99;
    j[absl::StrCat("max_", name, "_ms")] = d->max;
  }
  return j;
}

nlohmann::json ResultJson(const nlohmann::json& config, const std::vector<BenchRun>& runs,
                          const Slo& slo) {
  nlohmann::json out = {{"config", config}, {"runs", nlohmann::json::array()}};
  if (!slo.empty()) {
    nlohmann::json s = nlohmann::json::object();
    if (slo.ttft_ms) s["ttft"] = *slo.ttft_ms;
    if (slo.tpot_ms) s["tpot"] = *slo.tpot_ms;
    if (slo.e2el_ms) s["e2el"] = *slo.e2el_ms;
    out["slo_ms"] = s;
  }
  for (const BenchRun& run : runs) {
    nlohmann::json r = {{"backend", run.backend},
                        {"request_rate", Num(run.request_rate)},
                        {"burstiness", run.burstiness},
                        {"max_concurrency", run.max_concurrency},
                        {"start_unix_s", run.result.start_unix_s},
                        {"summary", SummaryJson(run.summary)}};
    for (const auto& [name, p] : run.by_priority) r["by_priority"][name] = SummaryJson(p);
    nlohmann::json reqs = nlohmann::json::array();
    for (const RequestRecord& q : run.result.records) {
      reqs.push_back({{"index", q.index},
                      {"priority", q.priority},
                      {"scheduled_s", q.scheduled_s},
                      {"start_s", q.start_s},
                      {"ttft_s", q.ttft_s},
                      {"itl_s", q.itl_s},
                      {"e2e_s", q.e2e_s},
                      {"end_s", q.end_s},
                      {"chunk_tokens", q.chunk_tokens},
                      {"expected_prompt_tokens", q.expected_prompt_tokens},
                      {"max_tokens", q.expected_output_tokens},
                      {"prompt_tokens", q.prompt_tokens},
                      {"cached_tokens", q.cached_tokens},
                      {"output_tokens", q.output_tokens},
                      {"status", StatusCodeName(q.status_code)},
                      {"error", q.error}});
    }
    r["requests"] = std::move(reqs);
    out["runs"].push_back(std::move(r));
  }
  if (nlohmann::json c = BackendComparisonJson(runs); !c.empty()) out["http_vs_grpc"] = c;
  return out;
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  if (!f) return absl::InternalError(absl::StrCat("cannot write ", path));
  f << text;
  f.close();
  if (!f) return absl::InternalError(absl::StrCat("write failed: ", path));
  return absl::OkStatus();
}

}  // namespace muse::bench
