// HtmlReport: one self-contained page, plots drawn here as inline SVG (no scripts, no CDN).
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "benchmarks/bench/report.h"

namespace muse::bench {
namespace {

constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;
  bool dashed = false;
};

std::string Escape(const std::string& s) {
  return absl::StrReplaceAll(s, {{"&", "&amp;"}, {"<", "&lt;"}, {">", "&gt;"}, {"\"", "&quot;"}});
}

// Ticks at 1, 2, 5 x 10^k covering [lo, hi].
std::vector<double> NiceTicks(double lo, double hi, int target = 6) {
  if (!(hi > lo)) hi = lo + 1;
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  }
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push_back(v);
  return t;
}

// log_x: latency CDFs span 10 ms to 10 s across sweep points; drawn on a log10 axis.
std::string LineChart(const std::string& title, const std::string& xlabel,
                      const std::string& ylabel, const std::vector<Series>& series,
                      bool log_x = false) {
  constexpr double W = 560, H = 340, L = 64, R = 150, T = 30, B = 46;
  double x0 = INFINITY, x1 = -INFINITY, y0 = 0, y1 = -INFINITY;
  for (const Series& s : series) {
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y) || (log_x && x <= 0)) continue;
      x0 = std::min(x0, x);
      x1 = std::max(x1, x);
      y1 = std::max(y1, y);
    }
  }
  if (!std::isfinite(x0)) {
    x0 = 0;
    x1 = 1;
    y1 = 1;
  }
  if (log_x) {
    x0 = std::pow(10.0, std::floor(std::log10(x0)));
    x1 = std::pow(10.0, std::ceil(std::log10(x1)));
    if (x1 <= x0) x1 = x0 * 10;
  } else if (x0 > 0 && x0 < 0.5 * x1) {
    x0 = 0;
  }
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= y0) y1 = y0 + 1;
  y1 *= 1.05;
  const auto sx = [&](double x) {
    if (log_x) {
      return L + (std::log10(std::max(x, x0)) - std::log10(x0)) /
                     (std::log10(x1) - std::log10(x0)) * (W - L - R);
    }
    return L + (x - x0) / (x1 - x0) * (W - L - R);
  };
  std::vector<double> xticks;
  if (log_x) {
    for (double t = x0; t <= x1 * 1.0001; t *= 10) xticks.push_back(t);
  } else {
    xticks = NiceTicks(x0, x1);
  }
  const auto sy = [&](double y) { return H - B - (y - y0) / (y1 - y0) * (H - T - B); };
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
      "font-family=\"sans-serif\" font-size=\"11\">\n"
      "<text x=\"%.0f\" y=\"18\" font-size=\"13\" font-weight=\"bold\">%s</text>\n",
      W, H, L, Escape(title));
  for (double t : xticks) {
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
                          sx(t), T * 1.0, sx(t), H - B, sx(t), H - B + 14, t);
  }
  for (double t : NiceTicks(y0, y1)) {
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                          L, sy(t), W - R, sy(t), L - 4, sy(t) + 4, t);
  }
  absl::StrAppendFormat(&svg,
                        "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
                        "stroke=\"#333\"/>\n"
                        "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n"
                        "<text transform=\"translate(14,%.0f) rotate(-90)\" "
                        "text-anchor=\"middle\">%s</text>\n",
                        L, T, W - L - R, H - T - B, (L + W - R) / 2, H - 8, Escape(xlabel),
                        (T + H - B) / 2, Escape(ylabel));
  for (size_t i = 0; i < series.size(); ++i) {
    const Series& s = series[i];
    const char* color = kColors[i % std::size(kColors)];
    std::string pts;
    // At most ~800 vertices per series keeps the page small.
    const size_t stride = std::max<size_t>(1, s.points.size() / 800);
    for (size_t k = 0; k < s.points.size(); k += stride) {
      const auto& [x, y] = s.points[k];
      if (std::isfinite(x) && std::isfinite(y))
        absl::StrAppendFormat(&pts, "%.1f,%.1f ", sx(x), sy(y));
    }
    if (!s.points.empty()) {
      const auto& [x, y] = s.points.back();
      if (std::isfinite(x) && std::isfinite(y))
        absl::StrAppendFormat(&pts, "%.1f,%.1f", sx(x), sy(y));
    }
    absl::StrAppendFormat(&svg,
                          "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\"%s "
                          "points=\"%s\"/>\n",
                          color, s.dashed ? " stroke-dasharray=\"5,3\"" : "", pts);
    if (s.points.size() <= 24) {
      for (const auto& [x, y] : s.points) {
        if (std::isfinite(x) && std::isfinite(y)) {
          absl::StrAppendFormat(&svg, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n",
                                sx(x), sy(y), color);
        }
      }
    }
    const double ly = T + 8 + 16 * static_cast<double>(i);
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" "
                          "stroke-width=\"2\"%s/><text x=\"%.0f\" y=\"%.0f\">%s</text>\n",
                          W - R + 8, ly, W - R + 26, ly, color,
                          s.dashed ? " stroke-dasharray=\"5,3\"" : "", W - R + 30, ly + 4,
                          Escape(s.name));
  }
  svg += "</svg>\n";
  return svg;
}

std::vector<std::pair<double, double>> Cdf(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  std::vector<std::pair<double, double>> pts;
  for (size_t i = 0; i < v.size(); ++i) pts.emplace_back(v[i], (i + 1.0) / v.size());
  return pts;
}

std::string RunLabel(const BenchRun& r) {
  std::string s =
      std::isinf(r.request_rate) ? "rate inf" : absl::StrFormat("rate %g", r.request_rate);
  if (r.max_concurrency > 0) absl::StrAppend(&s, ", conc ", r.max_concurrency);
  return s;
}

}  // namespace

std::string HtmlReport(const nlohmann::json& config, const std::vector<BenchRun>& runs) {
  std::string html =
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>muse-bench report</title>\n"
      "<style>body{font-family:sans-serif;margin:24px;max-width:1200px}"
      "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 8px;"
      "text-align:right}th{background:#f4f4f4}svg{margin:6px;border:1px solid #eee}"
      "pre{background:#f8f8f8;padding:8px;font-size:12px;white-space:pre-wrap}</style>\n"
      "</head><body>\n<h1>muse-bench report</h1>\n";
  absl::StrAppend(&html, "<h2>Configuration</h2><pre>", Escape(config.dump(2)), "</pre>\n");

  html +=
      "<h2>Summary</h2><table><tr><th>rate (req/s)</th><th>max conc</th><th>ok</th>"
      "<th>failed</th><th>duration s</th><th>req/s</th><th>goodput req/s</th>"
      "<th>in tok/s</th><th>out tok/s</th><th>TTFT p50 ms</th><th>TTFT p99 ms</th>"
      "<th>TPOT p50 ms</th><th>TPOT p99 ms</th><th>ITL p50 ms</th><th>ITL p99 ms</th>"
      "<th>E2E p50 ms</th><th>E2E p99 ms</th></tr>\n";
  for (const BenchRun& r : runs) {
    const Summary& s = r.summary;
    absl::StrAppendFormat(
        &html,
        "<tr><td>%s</td><td>%d</td><td>%d</td><td>%d</td><td>%.2f</td><td>%.2f</td><td>%s</td>"
        "<td>%.1f</td><td>%.1f</td><td>%.1f</td><td>%.1f</td><td>%.2f</td><td>%.2f</td>"
        "<td>%.2f</td><td>%.2f</td><td>%.1f</td><td>%.1f</td></tr>\n",
        std::isinf(r.request_rate) ? "inf" : absl::StrFormat("%g", r.request_rate),
        r.max_concurrency, s.completed, s.failed, s.duration_s, s.request_throughput,
        s.request_goodput ? absl::StrFormat("%.2f", *s.request_goodput) : "-", s.input_throughput,
        s.output_throughput, s.ttft_ms.median, s.ttft_ms.p99, s.tpot_ms.median, s.tpot_ms.p99,
        s.itl_ms.median, s.itl_ms.p99, s.e2el_ms.median, s.e2el_ms.p99);
  }
  html += "</table>\n";

  if (runs.size() > 1) {
    html += "<h2>Rate sweep</h2>\n";
    Series t50{"TTFT p50"}, t99{"TTFT p99", {}, true}, p50{"TPOT p50"}, p99{"TPOT p99", {}, true};
    Series req{"request/s"}, out{"output tok/s"}, in{"input tok/s"}, good{"goodput req/s"};
    for (const BenchRun& r : runs) {
      const double x = r.request_rate;
      t50.points.emplace_back(x, r.summary.ttft_ms.median);
      t99.points.emplace_back(x, r.summary.ttft_ms.p99);
      p50.points.emplace_back(x, r.summary.tpot_ms.median);
      p99.points.emplace_back(x, r.summary.tpot_ms.p99);
      req.points.emplace_back(x, r.summary.request_throughput);
      out.points.emplace_back(x, r.summary.output_throughput);
      in.points.emplace_back(x, r.summary.input_throughput);
      if (r.summary.request_goodput) good.points.emplace_back(x, *r.summary.request_goodput);
    }
    html += LineChart("TTFT vs request rate", "request rate (req/s)", "ms", {t50, t99});
    html += LineChart("TPOT vs request rate", "request rate (req/s)", "ms", {p50, p99});
    html +=
        LineChart("Token throughput vs request rate", "request rate (req/s)", "tok/s", {out, in});
    std::vector<Series> rs = {req};
    if (!good.points.empty()) rs.push_back(good);
    html += LineChart("Request throughput vs request rate", "request rate (req/s)", "req/s", rs);
    html += "<p>Runs at rate inf are left out of the sweep plots.</p>\n";
  }

  html += "<h2>Latency distributions</h2>\n";
  std::vector<Series> ttft, tpot, e2e, tput;
  for (const BenchRun& r : runs) {
    std::vector<double> a, b, c;
    for (const RequestRecord& q : r.result.records) {
      if (!q.success()) continue;
      a.push_back(q.ttft_s * 1000);
      if (q.output_tokens > 1) b.push_back((q.e2e_s - q.ttft_s) / (q.output_tokens - 1) * 1000);
      c.push_back(q.e2e_s * 1000);
    }
    ttft.push_back({RunLabel(r), Cdf(a)});
    tpot.push_back({RunLabel(r), Cdf(b)});
    e2e.push_back({RunLabel(r), Cdf(c)});
    const double span = std::max(1.0, r.result.duration_s);
    tput.push_back(
        {RunLabel(r),
         OutputThroughputOverTime(r.result.records, span > 60 ? 2.0 : (span > 10 ? 1.0 : 0.25))});
  }
  html += LineChart("TTFT CDF", "TTFT (ms, log scale)", "fraction of requests", ttft, true);
  html += LineChart("TPOT CDF", "TPOT (ms, log scale)", "fraction of requests", tpot, true);
  html += LineChart("E2E latency CDF", "E2E latency (ms, log scale)", "fraction of requests", e2e,
                    true);
  html += LineChart("Output throughput over time", "time since start (s)", "output tok/s", tput);
  html += "</body></html>\n";
  return html;
}

}  // namespace muse::bench
