// `muse-bench --soak` flags (the soak option group) and the mode's entry point.
#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>

#include "benchmarks/bench/soak.h"
#include "src/common/cli.h"

namespace muse::bench {

void AddSoakFlags(CLI::App& app, SoakConfig* c, bool* enabled) {
  using cli::AtLeast;
  using cli::InRange;
  auto* g = app.add_option_group(
      "soak",
      "reliability run (--soak): mixed requests, cancels, deadlines, slow readers, "
      "bursts; invariants checked on the server at the end");
  g->add_flag("--soak", *enabled,
              "run the soak instead of the benchmark (exit 1 if an invariant fails)");
  g->add_option("--metrics-port", c->metrics_port, "the server's --metrics-port (required)")
      ->check(InRange(1, 65535));
  g->add_option("--metrics-host", c->metrics_host, "IPv4 address of the metrics endpoint");
  g->add_option("--server-pid", c->server_pid,
                "server process for RSS (default: the one listening on the gRPC port)")
      ->check(AtLeast<int64_t>(1));
  g->add_option("--http-port", c->http_port,
                "the server's --http-port: --soak-http-fraction of the requests go to its "
                "OpenAI-compatible API")
      ->check(InRange(1, 65535));
  g->add_option("--soak-http-fraction", c->http_fraction, "share sent over HTTP (with --http-port)")
      ->check(InRange(0.0, 1.0));
  g->add_option("--server-log", c->server_log, "server log file to scan for error-level lines");
  g->add_option("--expected-log-error", c->expected_log_errors,
                "substring of an error-level log line that is expected (repeatable)");
  g->add_option("--soak-requests", c->num_requests, "measured requests, bursts included")
      ->check(AtLeast<int64_t>(1));
  g->add_option("--soak-warmup", c->warmup_requests, "warm-up requests before the RSS baseline")
      ->check(AtLeast<int64_t>(0));
  g->add_option("--soak-concurrency", c->concurrency, "requests in flight outside bursts")
      ->check(AtLeast<int64_t>(1));
  g->add_option("--soak-max-tokens", c->max_tokens,
                "max_tokens of ordinary requests (drawn in [1, N])")
      ->check(AtLeast<int64_t>(1));
  g->add_option("--soak-long-tokens", c->long_tokens,
                "max_tokens of deadline and slow-reader requests")
      ->check(AtLeast<int64_t>(1));
  g->add_option("--soak-cancel-fraction", c->cancel_fraction, "cancelled by the client")
      ->check(InRange(0.0, 1.0));
  g->add_option("--soak-deadline-fraction", c->deadline_fraction, "with a deadline that expires")
      ->check(InRange(0.0, 1.0));
  g->add_option("--soak-slow-fraction", c->slow_reader_fraction, "slow-reader streams")
      ->check(InRange(0.0, 1.0));
  g->add_option("--soak-invalid-fraction", c->invalid_fraction, "invalid on purpose")
      ->check(InRange(0.0, 1.0));
  g->add_option("--soak-image-fraction", c->image_fraction, "chat with an image (image models)")
      ->check(InRange(0.0, 1.0));
  g->add_option("--soak-n-fraction", c->multi_sample_fraction, "n in [2, 4]")
      ->check(InRange(0.0, 1.0));
  g->add_option("--soak-stop-fraction", c->stop_fraction, "with stop strings")
      ->check(InRange(0.0, 1.0));
  g->add_option("--soak-unary-fraction", c->unary_fraction, "GenerateUnary instead of Generate")
      ->check(InRange(0.0, 1.0));
  g->add_option("--soak-image-pool", c->image_pool, "distinct images")->check(AtLeast<int64_t>(1));
  g->add_option("--soak-bursts", c->bursts, "bursts during the run")->check(AtLeast<int64_t>(0));
  g->add_option("--soak-burst-size", c->burst_size, "requests per burst (above --max-waiting)")
      ->check(AtLeast<int64_t>(1));
  g->add_option("--soak-slow-hold", c->slow_reader_hold_s, "longest slow-reader pause, s")
      ->check(AtLeast(0.0));
  g->add_option("--soak-settle-timeout", c->settle_timeout_s, "seconds for the server to go idle")
      ->check(AtLeast(0.0));
  g->add_option("--soak-stall-timeout", c->stall_timeout_s,
                "fail when no request ends for this many seconds (a hang)")
      ->check(cli::Above(0.0));
  g->add_option("--soak-rss-tolerance", c->rss_tolerance, "allowed RSS growth after warm-up")
      ->check(AtLeast(0.0));
}

int SoakMain(const SoakConfig& config, const std::string& result_json) {
  if (config.metrics_port <= 0) {
    std::cerr << "muse-bench: --soak needs --metrics-port\n";
    return cli::kExitUsage;
  }
  const double fates = config.cancel_fraction + config.deadline_fraction +
                       config.slow_reader_fraction + config.invalid_fraction;
  if (fates > 1.0) {
    std::cerr << "muse-bench: --soak-*-fraction of cancel, deadline, slow and invalid sum to "
              << fates << " > 1\n";
    return cli::kExitUsage;
  }
  auto report = RunSoak(config);
  if (!report.ok()) {
    std::cerr << "soak: " << report.status() << "\n";
    return cli::kExitFailure;
  }
  std::cout << report->text << std::flush;
  if (!result_json.empty()) {
    std::ofstream f(result_json);
    f << report->json.dump(1) << "\n";
    if (!f) {
      std::cerr << "soak: cannot write " << result_json << "\n";
      return cli::kExitFailure;
    }
  }
  return report->passed ? 0 : cli::kExitFailure;
}

}  // namespace muse::bench
