#include "benchmarks/bench/self_test.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "benchmarks/bench/load_runner.h"

namespace muse::bench {

absl::StatusOr<SelfTestReport> RunSelfTest(const SelfTestConfig& config) {
  auto pacer = PacerServer::Start(config.pacer);
  if (!pacer.ok()) return pacer.status();
  RunConfig run;
  run.target = absl::StrCat("127.0.0.1:", (*pacer)->port());
  run.connections = config.connections;
  run.num_prompts = config.streams;
  WorkloadConfig wc;
  wc.random_input_len = 8;
  wc.random_output_len = config.pacer.messages;
  auto workload =
      Workload::Create(wc, ModelFacts{config.pacer.vocab_size, 1 << 20, false}, nullptr);
  if (!workload.ok()) return workload.status();
  const auto cpu = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
  };
  const double cpu0 = cpu();
  auto result = RunLoad(run, **workload, nullptr);
  if (!result.ok()) return result.status();
  const double cpu1 = cpu();

  SelfTestReport r;
  r.config = config;
  r.duration_s = result->duration_s;
  r.process_cpu_s = cpu1 - cpu0;
  for (const RequestRecord& rec : result->records)
    r.dispatch_wall_s = std::max(r.dispatch_wall_s, rec.start_s);
  // The pacer files a stream's write times in OnDone, which can run just after the client saw
  // the stream end: wait (bounded) until every successful stream is filed.
  size_t ok_streams = 0;
  for (const RequestRecord& rec : result->records) ok_streams += rec.success() ? 1 : 0;
  auto writes = (*pacer)->WriteTimes();
  for (int i = 0; i < 500 && writes.size() < ok_streams; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    writes = (*pacer)->WriteTimes();
  }
  const auto starts = (*pacer)->StartTimes();
  std::vector<double> delivery, ttft_excess, itl, send_lag, lateness;
  const auto ms = [](PacerServer::Clock::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
  };
  for (const RequestRecord& rec : result->records) {
    if (!rec.success()) {
      ++r.failed;
      continue;
    }
    ++r.completed;
    send_lag.push_back((rec.start_s - rec.scheduled_s) * 1000.0);
    ttft_excess.push_back((rec.ttft_s - config.pacer.first_delay_s) * 1000.0);
    for (double x : rec.itl_s) itl.push_back(x * 1000.0);
    const std::string id = absl::StrCat(run.request_id_prefix, rec.index);
    auto w = writes.find(id);
    auto s = starts.find(id);
    if (w == writes.end() || s == starts.end() || w->second.size() != rec.chunk_s.size()) continue;
    for (size_t k = 0; k < rec.chunk_s.size(); ++k) {
      const auto recv = result->start + std::chrono::duration_cast<PacerServer::Clock::duration>(
                                            std::chrono::duration<double>(rec.chunk_s[k]));
      delivery.push_back(ms(recv - w->second[k]));
      const double sched = config.pacer.first_delay_s + k * config.pacer.interval_s;
      lateness.push_back(ms(w->second[k] - s->second) - sched * 1000.0);
      ++r.chunks;
    }
  }
  r.delivery_ms = Describe(delivery);
  r.ttft_excess_ms = Describe(ttft_excess);
  r.itl_ms = Describe(itl);
  r.send_lag_ms = Describe(send_lag);
  r.server_lateness_ms = Describe(lateness);
  return r;
}

std::string FormatSelfTest(const SelfTestReport& r) {
  std::string out = absl::StrFormat(
      "Pacer self-test: %d streams at t=0 over %d connections, %d msgs/stream, first after %.1f "
      "ms, "
      "then every %.1f ms\n"
      "completed %d, failed %d, chunks matched %d, duration %.3f s, all sent after %.3f s\n"
      "process CPU (client + pacer server) %.3f s = %.1f us per streamed message\n",
      r.config.streams, r.config.connections, r.config.pacer.messages,
      r.config.pacer.first_delay_s * 1000, r.config.pacer.interval_s * 1000, r.completed, r.failed,
      r.chunks, r.duration_s, r.dispatch_wall_s, r.process_cpu_s,
      r.chunks > 0 ? r.process_cpu_s * 1e6 / r.chunks : 0.0);
  const auto row = [&](const char* name, const Distribution& d) {
    out += absl::StrFormat("  %-44s mean %8.3f  p50 %8.3f  p90 %8.3f  p99 %8.3f  max %8.3f\n", name,
                           d.mean, d.median, d.p90, d.p99, d.max);
  };
  row("delivery: client recv - server write (ms)", r.delivery_ms);
  row("TTFT - scheduled first delay (ms)", r.ttft_excess_ms);
  row("ITL (ms)", r.itl_ms);
  row("send lag: send - scheduled (ms)", r.send_lag_ms);
  row("pacer lateness: write - schedule (ms)", r.server_lateness_ms);
  return out;
}

}  // namespace muse::bench
