#include "benchmarks/bench/soak.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <array>
#include <chrono>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "benchmarks/bench/client_channel.h"
#include "benchmarks/bench/load_runner.h"
#include "benchmarks/bench/request_record.h"
#include "benchmarks/bench/server_probe.h"
#include "benchmarks/bench/soak_client.h"
#include "benchmarks/bench/soak_plan.h"
#include "muse/v1/inference.grpc.pb.h"

namespace muse::bench {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct ServerState {
  PromSamples metrics;
  int64_t rss_bytes = -1;
  bool settled = false;
  double settle_s = 0;
};

int64_t Total(const std::map<std::string, int64_t>& codes) {
  int64_t n = 0;
  for (const auto& [c, k] : codes) n += k;
  return n;
}

const std::vector<std::string> kGenerateMethods = {"Generate", "GenerateUnary"};
const std::vector<std::string> kHttpMethods = {"POST /v1/chat/completions", "POST /v1/completions"};

// Polls /metrics until nothing runs, waits or holds a KV block and the request counters stop
// moving (OnDone records a code just after the client saw it), then reads RSS.
absl::StatusOr<ServerState> Settle(const SoakConfig& c, int64_t pid) {
  ServerState s;
  const auto start = Clock::now();
  int64_t last_total = -1;
  while (true) {
    auto m = ScrapeMetrics(c.metrics_host, c.metrics_port);
    if (!m.ok()) return m.status();
    const int64_t total =
        Total(RequestCodes(*m, kGenerateMethods)) + Total(RequestCodes(*m, kHttpMethods));
    const bool idle = SampleOr(*m, "muse_num_requests_running", -1) == 0 &&
                      SampleOr(*m, "muse_num_requests_waiting", -1) == 0 &&
                      SampleOr(*m, "muse_kv_blocks_used", -1) == 0;
    s.metrics = std::move(*m);
    if (idle && total == last_total) {
      s.settled = true;
      break;
    }
    last_total = total;
    if (SecondsSince(start) > c.settle_timeout_s) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  s.settle_s = SecondsSince(start);
  if (pid > 0) {
    auto rss = ProcessRssBytes(pid);
    if (rss.ok()) s.rss_bytes = *rss;
  }
  return s;
}

struct Check {
  std::string name;
  bool ok;
  std::string detail;
};

std::string CodeName(int code) { return StatusCodeName(code); }

// Client codes (what each request ended with) against the server's muse_requests_total deltas for
// the same face. INVALID_ARGUMENT is the server's own answer to a request nobody cancels: equal.
// Every other code the client saw that is not CANCELLED / DEADLINE_EXCEEDED is also the server's
// answer, so the server counts at least as many. A request the client saw end CANCELLED or
// DEADLINE_EXCEEDED (`raced`) is, on the server, CANCELLED, DEADLINE_EXCEEDED, answered first
// (OK / RESOURCE_EXHAUSTED) or never seen; the detail splits `raced` into those.
std::vector<Check> CompareCodes(const std::string& face, const std::map<int, int64_t>& client,
                                const std::map<std::string, int64_t>& server) {
  auto C = [&](grpc::StatusCode code) {
    auto it = client.find(static_cast<int>(code));
    return it == client.end() ? int64_t{0} : it->second;
  };
  auto S = [&](const char* code) {
    auto it = server.find(code);
    return it == server.end() ? int64_t{0} : it->second;
  };
  int64_t client_total = 0, server_total = 0, server_unexpected = 0;
  for (const auto& [code, n] : client) client_total += n;
  for (const auto& [code, n] : server) {
    server_total += n;
    if (code != "OK" && code != "CANCELLED" && code != "DEADLINE_EXCEEDED" &&
        code != "RESOURCE_EXHAUSTED" && code != "INVALID_ARGUMENT") {
      server_unexpected += n;
    }
  }
  const int64_t raced = C(grpc::StatusCode::CANCELLED) + C(grpc::StatusCode::DEADLINE_EXCEEDED);
  const int64_t ok_extra = S("OK") - C(grpc::StatusCode::OK);
  const int64_t re_extra = S("RESOURCE_EXHAUSTED") - C(grpc::StatusCode::RESOURCE_EXHAUSTED);
  const int64_t unseen = client_total - server_total;
  std::vector<Check> out;
  out.push_back(
      {face + " server codes: INVALID_ARGUMENT exact, nothing unexpected",
       S("INVALID_ARGUMENT") == C(grpc::StatusCode::INVALID_ARGUMENT) && server_unexpected == 0,
       absl::StrCat("INVALID_ARGUMENT server ", S("INVALID_ARGUMENT"), " client ",
                    C(grpc::StatusCode::INVALID_ARGUMENT), ", other codes ", server_unexpected)});
  out.push_back({face + " server codes vs client (exact but for cancel/deadline races)",
                 ok_extra >= 0 && re_extra >= 0 && unseen >= 0 &&
                     S("DEADLINE_EXCEEDED") <= C(grpc::StatusCode::DEADLINE_EXCEEDED) &&
                     S("CANCELLED") <= raced,
                 absl::StrCat("client CANCELLED+DEADLINE_EXCEEDED ", raced, " = server CANCELLED ",
                              S("CANCELLED"), " + DEADLINE_EXCEEDED ", S("DEADLINE_EXCEEDED"),
                              " + answered OK first ", ok_extra, " + RESOURCE_EXHAUSTED first ",
                              re_extra, " + never reached the server ", unseen)});
  return out;
}

}  // namespace

absl::StatusOr<SoakReport> RunSoak(const SoakConfig& c) {
  if (c.metrics_port <= 0) return absl::InvalidArgumentError("--metrics-port is required");
  const auto t0 = Clock::now();
  RunConfig rc;
  rc.target = c.target;
  rc.api_key = c.api_key;
  rc.model = c.model;
  std::string model_id;
  auto facts = FetchModelFacts(rc, 60, &model_id);
  if (!facts.ok()) return facts.status();

  int64_t pid = c.server_pid;
  if (pid <= 0) {
    const size_t colon = c.target.rfind(':');
    auto p = PidListeningOn(std::stoi(c.target.substr(colon + 1)));
    if (!p.ok()) return p.status();
    pid = *p;
  }
  if (!c.server_log.empty()) {  // fail before the run, not after it
    auto scan = ScanLogErrors(c.server_log, 0, c.expected_log_errors);
    if (!scan.ok()) return scan.status();
  }

  SoakClient client(c, facts->supports_images);
  if (absl::Status st = client.Connect(); !st.ok()) return st;
  std::cerr << "soak: server pid " << pid << ", model " << model_id
            << (facts->supports_images ? " (images)" : "") << "\n";

  // Warm-up: the same mix (no bursts) on indices past the measured ones.
  SoakPhase warmup;
  if (c.warmup_requests > 0) warmup = client.Run(int64_t{1} << 40, c.warmup_requests, 0, "warm-up");
  if (warmup.stalled) {
    return absl::DeadlineExceededError("warm-up stalled: the server stopped answering");
  }
  auto base = Settle(c, pid);
  if (!base.ok()) return base.status();

  SoakPhase run = client.Run(0, c.num_requests, c.bursts, "run");
  auto end = Settle(c, pid);
  if (!end.ok()) return end.status();

  // ---- client side ----
  std::map<int, int64_t> client_codes, face_codes[2];             // all; [0] gRPC, [1] HTTP
  std::map<std::string, std::map<std::string, int64_t>> by_fate;  // fate -> code -> n
  std::map<std::string, int64_t> by_input, by_kind;
  int64_t bad_terminal = 0, bad_code = 0, incomplete_ok = 0, after_finished = 0;
  int64_t burst_exhausted = 0, burst_total = 0, deadline_requests = 0, cancels_sent = 0, tokens = 0;
  std::vector<std::string> examples;
  for (int64_t i = 0; i < run.count; ++i) {
    const SoakOutcome& o = run.outcomes[static_cast<size_t>(i)];
    const int terminal = o.terminal.load();
    if (terminal != 1) {
      ++bad_terminal;
      if (examples.size() < 10)
        examples.push_back(absl::StrCat("soak-", i, ": ", terminal, " terminal statuses"));
      continue;
    }
    ++client_codes[o.code];
    ++face_codes[o.http ? 1 : 0][o.code];
    ++by_fate[FateName(o.fate)][CodeName(o.code)];
    ++by_input[InputName(o.input)];
    ++by_kind[o.unary ? "unary" : "stream"];
    if (o.http) ++by_kind["http"];
    if (o.n > 1) ++by_kind["n>1"];
    tokens += o.tokens;
    if (o.cancel_sent) ++cancels_sent;
    if (o.fate == Fate::kDeadline) ++deadline_requests;
    if (o.fate == Fate::kBurst) {
      ++burst_total;
      if (o.code == static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED)) ++burst_exhausted;
    }
    if (!AllowedCodes(o.fate).count(o.code)) {
      ++bad_code;
      if (examples.size() < 10) {
        examples.push_back(absl::StrCat("soak-", i, " (", FateName(o.fate), "): ", CodeName(o.code),
                                        ": ", o.error));
      }
    }
    // An OK answer that was read: one `finished` message and a finish reason for each sample (a
    // slow reader that cancelled may get OK without reading, when the server finished first).
    if (o.code == 0 && o.fate != Fate::kSlowThenCancel &&
        (o.finished_messages != 1 || o.samples_finished != o.n)) {
      ++incomplete_ok;
      if (examples.size() < 10) {
        examples.push_back(absl::StrCat("soak-", i, ": OK with ", o.finished_messages,
                                        " finished messages, ", o.samples_finished, "/", o.n,
                                        " samples finished"));
      }
    }
    if (o.message_after_finished) ++after_finished;
  }

  // ---- server side: deltas over the measured run, per face ----
  auto server_delta = [&](const std::vector<std::string>& methods) {
    std::map<std::string, int64_t> codes = RequestCodes(end->metrics, methods);
    for (const auto& [code, n] : RequestCodes(base->metrics, methods)) codes[code] -= n;
    return codes;
  };
  const std::map<std::string, int64_t> server_codes[2] = {server_delta(kGenerateMethods),
                                                          server_delta(kHttpMethods)};

  std::vector<Check> checks;
  checks.push_back({"one terminal status per request (no hang)", bad_terminal == 0 && !run.stalled,
                    absl::StrCat(run.count - bad_terminal, " of ", run.count, " requests",
                                 run.stalled ? "; the run stalled" : "")});
  checks.push_back(
      {"client codes allowed by each fate", bad_code == 0, absl::StrCat(bad_code, " unexpected")});
  checks.push_back({"OK answers complete (one finished message, n finish reasons)",
                    incomplete_ok == 0 && after_finished == 0,
                    absl::StrCat(incomplete_ok, " incomplete, ", after_finished,
                                 " with messages after `finished`")});
  if (c.bursts > 0) {
    checks.push_back({"bursts above --max-waiting got RESOURCE_EXHAUSTED", burst_exhausted > 0,
                      absl::StrCat(burst_exhausted, " of ", burst_total, " burst requests")});
  }
  checks.push_back(
      {"server settled: running = waiting = 0", end->settled,
       absl::StrFormat("running %g, waiting %g after %.1f s",
                       SampleOr(end->metrics, "muse_num_requests_running", -1),
                       SampleOr(end->metrics, "muse_num_requests_waiting", -1), end->settle_s)});
  const double kv_used = SampleOr(end->metrics, "muse_kv_blocks_used", -1);
  const double kv_cached = SampleOr(end->metrics, "muse_kv_blocks_cached", -1);
  checks.push_back({"no KV block referenced (prefix cache holds only evictable blocks)",
                    kv_used == 0,
                    absl::StrFormat("kv_blocks_used %g, kv_blocks_cached %g of %g", kv_used,
                                    kv_cached, SampleOr(end->metrics, "muse_kv_blocks_total"))});
  for (int face = 0; face < 2; ++face) {
    if (face == 1 && c.http_port <= 0) break;
    for (Check& k :
         CompareCodes(face == 0 ? "gRPC" : "HTTP", face_codes[face], server_codes[face])) {
      checks.push_back(std::move(k));
    }
  }
  const double rss_growth = base->rss_bytes > 0 && end->rss_bytes > 0
                                ? static_cast<double>(end->rss_bytes - base->rss_bytes) /
                                      static_cast<double>(base->rss_bytes)
                                : 1e9;
  checks.push_back(
      {absl::StrFormat("RSS within %.0f%% of RSS after warm-up", c.rss_tolerance * 100),
       rss_growth <= c.rss_tolerance,
       absl::StrFormat("%.1f MiB -> %.1f MiB (%+.2f%%)", base->rss_bytes / 1048576.0,
                       end->rss_bytes / 1048576.0, rss_growth * 100)});
  checks.push_back(
      {"server process alive", ::kill(static_cast<pid_t>(pid), 0) == 0, absl::StrCat("pid ", pid)});
  nlohmann::json log_json;
  if (!c.server_log.empty()) {
    auto scan = ScanLogErrors(c.server_log, 0, c.expected_log_errors);
    if (!scan.ok()) return scan.status();
    checks.push_back({"no unexpected error-level log lines", scan->unexpected_count == 0,
                      absl::StrCat(scan->unexpected_count, " unexpected, ", scan->expected_errors,
                                   " expected, ", scan->lines, " lines")});
    log_json = {{"path", c.server_log},
                {"lines", scan->lines},
                {"expected_errors", scan->expected_errors},
                {"unexpected_errors", scan->unexpected_count},
                {"unexpected_examples", scan->unexpected}};
  }

  // ---- report ----
  SoakReport rep;
  rep.passed = true;
  for (const Check& k : checks) rep.passed = rep.passed && k.ok;
  nlohmann::json client_json, server_json, checks_json = nlohmann::json::array();
  // code name -> {gRPC client, gRPC server, HTTP client, HTTP server}
  std::map<std::string, std::array<int64_t, 4>> table;
  for (int face = 0; face < 2; ++face) {
    const char* name = face == 0 ? "grpc" : "http";
    client_json[name] = nlohmann::json::object();
    server_json[name] = nlohmann::json::object();
    for (const auto& [code, n] : face_codes[face]) {
      client_json[name][CodeName(code)] = n;
      table[CodeName(code)][face * 2] = n;
    }
    for (const auto& [code, n] : server_codes[face]) {
      if (n == 0) continue;
      server_json[name][code] = n;
      table[code][face * 2 + 1] = n;
    }
  }
  for (const Check& k : checks) {
    checks_json.push_back({{"name", k.name}, {"ok", k.ok}, {"detail", k.detail}});
  }
  auto delta = [&](const std::string& series) {
    return SampleOr(end->metrics, series) - SampleOr(base->metrics, series);
  };
  nlohmann::json finish;
  for (const char* r : {"stop", "length", "abort", "deadline", "error"}) {
    const double d = delta(absl::StrCat("muse_generations_total{finish_reason=\"", r, "\"}"));
    if (d != 0) finish[r] = d;
  }
  rep.json = {
      {"passed", rep.passed},
      {"model_id", model_id},
      {"target", c.target},
      {"server_pid", pid},
      {"requests", run.count},
      {"warmup_requests", c.warmup_requests},
      {"run_wall_s", run.wall_s},
      {"total_wall_s", SecondsSince(t0)},
      {"client_codes", client_json},
      {"server_codes", server_json},
      {"by_fate", by_fate},
      {"by_input", by_input},
      {"by_kind", by_kind},
      {"cancels_sent", cancels_sent},
      {"output_tokens_received", tokens},
      {"server_finish_reasons", finish},
      {"server_preemptions", delta("muse_num_preemptions_total")},
      {"server_engine_rejected", delta("muse_engine_rejected_total")},
      {"encoder_cache_misses", delta("muse_encoder_cache_misses_total")},
      {"encoder_cache_hits", delta("muse_encoder_cache_hits_total")},
      {"kv_blocks_used", kv_used},
      {"kv_blocks_cached", kv_cached},
      {"rss_after_warmup_bytes", base->rss_bytes},
      {"rss_after_run_bytes", end->rss_bytes},
      {"checks", checks_json},
      {"examples", examples},
  };
  if (!log_json.is_null()) rep.json["log"] = log_json;

  std::string& t = rep.text;
  absl::StrAppendFormat(&t, "============ muse-bench --soak ============\n");
  absl::StrAppendFormat(&t, "%-34s %d (+%d warm-up)\n", "Requests:", run.count, c.warmup_requests);
  absl::StrAppendFormat(&t, "%-34s %.1f s (total %.1f s)\n", "Run wall time:", run.wall_s,
                        SecondsSince(t0));
  absl::StrAppendFormat(&t, "%-34s %d\n", "Output tokens received:", tokens);
  absl::StrAppendFormat(&t, "%-34s %12s %12s %12s %12s\n", "Per code:", "gRPC client",
                        "gRPC server", "HTTP client", "HTTP server");
  for (const auto& [name, n] : table) {
    absl::StrAppendFormat(&t, "  %-32s %12d %12d %12d %12d\n", name, n[0], n[1], n[2], n[3]);
  }
  absl::StrAppendFormat(&t, "Per fate:\n");
  for (const auto& [fate, codes] : by_fate) {
    std::string row;
    for (const auto& [code, n] : codes) absl::StrAppend(&row, code, " ", n, "  ");
    absl::StrAppendFormat(&t, "  %-32s %s\n", fate, row);
  }
  absl::StrAppendFormat(&t, "Invariants:\n");
  for (const Check& k : checks) {
    absl::StrAppendFormat(&t, "  [%s] %s: %s\n", k.ok ? "ok" : "FAIL", k.name, k.detail);
  }
  for (const std::string& e : examples) absl::StrAppendFormat(&t, "  example: %s\n", e);
  if (!log_json.is_null()) {
    for (const auto& l : log_json["unexpected_examples"]) {
      absl::StrAppendFormat(&t, "  log: %s\n", l.get<std::string>());
    }
  }
  absl::StrAppendFormat(&t, "Result: %s\n", rep.passed ? "PASS" : "FAIL");
  return rep;
}

}  // namespace muse::bench
