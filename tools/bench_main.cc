// muse-bench: load generator for muse-server's gRPC and OpenAI HTTP APIs with vLLM
// benchmark_serving metrics.
//   muse-bench --port 50051 --dataset-name random --random-input-len 128 --random-output-len 64
//              --num-prompts 200 --rates 1,2,4,inf --result-json r.json --html r.html
//   muse-bench --port 50051 --http-port 8000 --backend grpc,openai-completions --rates inf
//              --max-concurrency 32 --num-prompts 200   # HTTP overhead vs gRPC, same workload
//   muse-bench --self-test --streams 2000     # client overhead against an in-process pacer
//   muse-bench --soak --port 50051 --metrics-port 9090 --soak-requests 10000   # reliability run
// `muse-bench --help` lists every flag.
#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <ctime>
#include <exception>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "benchmarks/bench/load_runner.h"
#include "benchmarks/bench/progress.h"
#include "benchmarks/bench/report.h"
#include "benchmarks/bench/self_test.h"
#include "benchmarks/bench/soak.h"
#include "nlohmann/json.hpp"
#include "src/common/cli.h"
#include "src/common/logging.h"

namespace {

using muse::bench::BenchRun;

// "inf" or a positive number of requests per second.
const CLI::Validator kRate(
    [](std::string& in) -> std::string {
      double v = 0;
      if (in == "inf" || (absl::SimpleAtod(in, &v) && v > 0 && std::isfinite(v))) return "";
      return "not a rate: '" + in + "' (requests/s > 0, or inf)";
    },
    "R>0|inf");

double ParseRate(const std::string& s) {  // after kRate
  if (s == "inf") return std::numeric_limits<double>::infinity();
  double v = 0;
  (void)absl::SimpleAtod(s, &v);
  return v;
}

std::string Now8601() {
  char buf[64];
  std::time_t t = std::time(nullptr);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

nlohmann::json MachineJson() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  std::string cpu;
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  return {{"hostname", host},
          {"cpu", cpu},
          {"hardware_threads", std::thread::hardware_concurrency()},
          {"loadavg_at_start", {load[0], load[1], load[2]}}};
}

}  // namespace

int main(int argc, char** argv) try {
  using muse::cli::AtLeast;
  using muse::cli::kExitUsage;
  muse::InitLogging("info");
  muse::bench::RunConfig run;
  muse::bench::WorkloadConfig wc;
  std::string host = "127.0.0.1", target, dataset = "random", slo_spec;
  int port = 50051;
  std::string result_json, html_path, image_sizes, priority_mix;
  std::string request_rate;
  std::vector<std::string> rate_list, backend_list = {"grpc"};
  double wait_s = 30, temperature = 0, interval_ms = 20, first_delay_ms = 50;
  std::string json_schema_path;
  int64_t warmup = 1;
  bool no_progress = false, self_test = false, serve_pacer = false;
  muse::bench::SelfTestConfig st;
  muse::bench::SoakConfig soak;
  bool soak_mode = false;
  std::string cmdline = absl::StrJoin(std::vector<std::string>(argv, argv + argc), " ");

  CLI::App app("Load generator for muse-server's gRPC API (vLLM benchmark_serving metrics).",
               "muse-bench");
  muse::cli::ConfigureApp(app);
  app.footer(
      "Summary per rate on stdout; progress and errors on stderr. Exit 3 when any request failed.");
  auto* server_flags = app.add_option_group("server");
  auto* host_opt = server_flags->add_option("--host", host, "server host");
  auto* port_opt =
      server_flags->add_option("--port", port, "server port (--serve-pacer: its port, 0 = any)")
          ->check(muse::cli::InRange(0, 65535));
  server_flags->add_option("--target", target, "server HOST:PORT")
      ->excludes(host_opt)
      ->excludes(port_opt);
  server_flags->add_option("--api-key", run.api_key, "sent as 'authorization: Bearer KEY'");
  server_flags->add_option("--model", run.model,
                           "GenerateRequest.model (default: the served model)");
  server_flags
      ->add_option("--connections", run.connections,
                   "grpc: HTTP/2 connections, requests round-robin; openai-*: io threads")
      ->check(AtLeast(1));
  server_flags
      ->add_option("--backend", backend_list,
                   "grpc, openai-chat, openai-completions (the latter two: the server's "
                   "--http-port, SSE); a list runs each rate over each backend in turn and "
                   "prints the HTTP output tok/s loss vs grpc")
      ->delimiter(',')
      ->check(CLI::IsMember({"grpc", "openai-chat", "openai-completions"}));
  server_flags->add_option("--wait-for-server", wait_s, "seconds to wait for ModelInfo to answer")
      ->check(AtLeast(0.0));
  server_flags
      ->add_option("--request-timeout", run.request_timeout_s,
                   "per-request deadline in s; 0 = none")
      ->check(AtLeast(0.0));

  auto* arrivals = app.add_option_group("arrivals");
  auto* rate_opt = arrivals->add_option("--request-rate", request_rate, "requests/s (default: inf)")
                       ->check(kRate);
  arrivals->add_option("--rates", rate_list, "sweep: R1,R2,...")
      ->delimiter(',')
      ->allow_extra_args(false)
      ->check(kRate)
      ->excludes(rate_opt);
  arrivals->add_option("--burstiness", run.arrival.burstiness, "gamma shape; 1 = Poisson")
      ->check(muse::cli::Above(0.0));
  arrivals->add_option("--max-concurrency", run.max_concurrency, "0 = unlimited")
      ->check(AtLeast<int64_t>(0));
  auto* num_opt = arrivals->add_option("--num-prompts", run.num_prompts, "requests per rate")
                      ->check(AtLeast<int64_t>(1));
  arrivals
      ->add_option("--duration", run.duration_s,
                   "send for this many seconds instead of --num-prompts")
      ->check(muse::cli::Above(0.0))
      ->default_str("off")
      ->excludes(num_opt);
  arrivals->add_option("--seed", wc.seed, "workload and arrival seed")->check(muse::cli::kUnsigned);
  arrivals->add_option("--warmup", warmup, "requests sent one at a time before the measured run")
      ->check(AtLeast<int64_t>(0));

  auto* workload_flags = app.add_option_group("workload");
  workload_flags->add_option("--dataset-name", dataset, "workload")
      ->check(CLI::IsMember({"random", "sharegpt", "image"}));
  workload_flags->add_option("--random-input-len", wc.random_input_len, "prompt tokens")
      ->check(AtLeast<int64_t>(1));
  workload_flags->add_option("--random-output-len", wc.random_output_len, "max tokens")
      ->check(AtLeast<int64_t>(1));
  workload_flags
      ->add_option("--random-range-ratio", wc.random_range_ratio,
                   "lengths uniform in [L(1-r), L(1+r)]")
      ->check(CLI::Validator(
          [](std::string& in) -> std::string {
            double v = -1;
            return absl::SimpleAtod(in, &v) && v >= 0 && v < 1 ? ""
                                                               : "must be in [0, 1), got " + in;
          },
          "in [0, 1)"));
  workload_flags
      ->add_option("--random-prefix-len", wc.random_prefix_len, "tokens shared by every request")
      ->check(AtLeast<int64_t>(0));
  workload_flags->add_option("--dataset-path", wc.dataset_path, "ShareGPT JSON")
      ->check(CLI::ExistingFile);
  workload_flags
      ->add_option("--sharegpt-output-len", wc.sharegpt_output_len, "0 = the reply's length")
      ->check(AtLeast<int64_t>(0));
  workload_flags->add_flag("--ignore-eos", wc.ignore_eos, "ShareGPT: generate max tokens");
  workload_flags->add_option("--image-sizes", image_sizes, "WxH,... (default: 224x224)");
  workload_flags
      ->add_option("--image-repeat-ratio", wc.image_repeat_ratio, "share of repeated images")
      ->check(muse::cli::InRange(0.0, 1.0));
  workload_flags->add_option("--priority-mix", priority_mix, "e.g. interactive:0.7,batch:0.3");
  workload_flags
      ->add_option("--json-schema", json_schema_path,
                   "structured output: every request constrained by this JSON schema file")
      ->check(CLI::ExistingFile);
  workload_flags->add_option("--temperature", temperature, "sampling temperature")
      ->check(AtLeast(0.0));

  auto* output = app.add_option_group("metrics and output");
  output->add_option("--slo,--goodput", slo_spec, "goodput SLOs, e.g. ttft:MS,tpot:MS,e2el:MS");
  output->add_option("--result-json", result_json, "write the runs as JSON");
  output->add_option("--html", html_path, "write an HTML report");
  output->add_flag("--no-progress", no_progress, "no progress bar");

  auto* self = app.add_option_group("self-test");
  self->add_flag("--self-test", self_test, "client overhead against an in-process pacer server");
  self->add_flag("--serve-pacer", serve_pacer,
                 "only run the pacer server on --port (until SIGTERM), to calibrate a client in "
                 "another process");
  self->add_option("--streams", st.streams, "streams, all sent at t = 0")
      ->check(AtLeast<int64_t>(1));
  self->add_option("--messages", st.pacer.messages, "messages per stream")->check(AtLeast(1));
  self->add_option("--interval-ms", interval_ms, "pacer interval between messages")
      ->check(AtLeast(0.0));
  self->add_option("--first-delay-ms", first_delay_ms, "pacer delay of the first message")
      ->check(AtLeast(0.0));
  muse::bench::AddSoakFlags(app, &soak, &soak_mode);
  if (auto rc = muse::cli::ParseCommandLine(app, argc, argv)) return *rc;

  const bool progress = !no_progress;
  run.temperature = static_cast<float>(temperature);
  if (!json_schema_path.empty()) {
    std::ifstream in(json_schema_path);
    std::stringstream text;
    text << in.rdbuf();
    if (!nlohmann::json::accept(text.str())) {
      std::cerr << "muse-bench: --json-schema: " << json_schema_path << " is not JSON\n";
      return kExitUsage;
    }
    run.json_schema = text.str();
  }
  st.pacer.interval_s = interval_ms / 1000;
  st.pacer.first_delay_s = first_delay_ms / 1000;
  std::vector<double> rates = {std::numeric_limits<double>::infinity()};
  if (!request_rate.empty()) rates = {ParseRate(request_rate)};
  if (!rate_list.empty()) {
    rates.clear();
    for (const auto& r : rate_list) rates.push_back(ParseRate(r));
  }
  if (!image_sizes.empty()) {
    auto s = muse::bench::ParseImageSizes(image_sizes);
    if (!s.ok()) {
      std::cerr << "muse-bench: " << s.status().message() << "\n";
      return kExitUsage;
    }
    wc.image_sizes = *s;
  }
  if (!priority_mix.empty()) {
    auto m = muse::bench::ParsePriorityMix(priority_mix);
    if (!m.ok()) {
      std::cerr << "muse-bench: " << m.status().message() << "\n";
      return kExitUsage;
    }
    wc.priority_mix = *m;
  }

  if (serve_pacer) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before gRPC starts threads
    auto pacer = muse::bench::PacerServer::Start(st.pacer, port);
    if (!pacer.ok()) {
      std::cerr << pacer.status() << "\n";
      return 1;
    }
    std::cerr << "pacer listening on 127.0.0.1:" << (*pacer)->port() << "\n";
    int sig = 0;
    sigwait(&set, &sig);
    return 0;
  }
  if (self_test) {
    st.connections = run.connections;
    auto r = muse::bench::RunSelfTest(st);
    if (!r.ok()) {
      std::cerr << "self-test: " << r.status() << "\n";
      return 1;
    }
    std::cout << muse::bench::FormatSelfTest(*r);
    return r->failed == 0 ? 0 : 1;
  }

  if (run.duration_s > 0 && run.max_concurrency <= 0) {
    for (double r : rates) {
      if (std::isinf(r)) {
        std::cerr << "muse-bench: --duration with rate inf needs --max-concurrency (else it opens "
                     "streams without bound)\n";
        return kExitUsage;
      }
    }
  }
  run.target = target.empty() ? absl::StrCat(host, ":", port) : target;
  if (soak_mode) {
    soak.target = run.target;
    soak.api_key = run.api_key;
    soak.model = run.model;
    soak.connections = run.connections;
    soak.seed = wc.seed;
    return muse::bench::SoakMain(soak, result_json);
  }
  run.arrival.seed = wc.seed;
  run.http_host = host;
  run.http_port = soak.http_port;  // --http-port is registered with the soak flags
  std::vector<muse::bench::BackendKind> backends;
  for (const std::string& b : backend_list) {
    auto kind = muse::bench::ParseBackend(b);
    if (!kind.ok()) {
      std::cerr << "muse-bench: " << kind.status().message() << "\n";
      return kExitUsage;
    }
    if (*kind != muse::bench::BackendKind::kGrpc && run.http_port <= 0) {
      std::cerr << "muse-bench: --backend " << b << " needs --http-port\n";
      return kExitUsage;
    }
    backends.push_back(*kind);
  }
  auto slo = muse::bench::ParseSlo(slo_spec);
  if (!slo.ok()) {
    std::cerr << "muse-bench: " << slo.status().message() << "\n";
    return kExitUsage;
  }
  if (dataset == "random") {
    wc.kind = muse::bench::WorkloadKind::kRandom;
  } else if (dataset == "sharegpt") {
    wc.kind = muse::bench::WorkloadKind::kShareGpt;
    wc.sharegpt_max_samples = run.duration_s > 0 ? 1000 : run.num_prompts;
  } else {  // "image" (--dataset-name is checked while parsing)
    wc.kind = muse::bench::WorkloadKind::kImage;
  }

  std::string model_id;
  auto facts = muse::bench::FetchModelFacts(run, wait_s, &model_id);
  if (!facts.ok()) {
    std::cerr << facts.status() << "\n";
    return 1;
  }
  if (wc.kind == muse::bench::WorkloadKind::kImage && !facts->supports_images) {
    std::cerr << "warning: model " << model_id << " does not report image support\n";
  }
  auto workload = muse::bench::Workload::Create(wc, *facts, muse::bench::RemoteTokenizer(run));
  if (!workload.ok()) {
    std::cerr << workload.status() << "\n";
    return 1;
  }

  nlohmann::json config = {
      {"date", Now8601()},
      {"command", cmdline},
      {"machine", MachineJson()},
      {"target", run.target},
      {"model_id", model_id},
      {"vocab_size", facts->vocab_size},
      {"context_length", facts->context_length},
      {"dataset_name", dataset},
      {"dataset_path", wc.dataset_path},
      {"seed", wc.seed},
      {"num_prompts", run.duration_s > 0 ? 0 : run.num_prompts},
      {"duration_s", run.duration_s},
      {"burstiness", run.arrival.burstiness},
      {"max_concurrency", run.max_concurrency},
      {"connections", run.connections},
      {"backends", backend_list},
      {"http_port", run.http_port},
      {"random_input_len", wc.random_input_len},
      {"random_output_len", wc.random_output_len},
      {"random_range_ratio", wc.random_range_ratio},
      {"random_prefix_len", wc.random_prefix_len},
      {"image_repeat_ratio", wc.image_repeat_ratio},
      {"priority_mix", wc.priority_mix},
      {"temperature", run.temperature},
      {"json_schema", run.json_schema},
      {"api_key_set", !run.api_key.empty()},
  };

  for (const muse::bench::BackendKind kind : backends) {
    if (warmup <= 0) break;
    // Warm-up requests use indices past the measured ones' so the measured set is unchanged.
    muse::bench::RunConfig w = run;
    w.backend = kind;
    w.arrival.rate = std::numeric_limits<double>::infinity();
    w.duration_s = 0;
    w.num_prompts = warmup;
    w.max_concurrency = 1;
    w.request_id_prefix = "warmup-";
    w.index_offset = int64_t{1} << 40;
    auto r = muse::bench::RunLoad(w, **workload, nullptr);
    if (!r.ok()) {
      std::cerr << "warm-up (" << muse::bench::BackendName(kind) << "): " << r.status() << "\n";
      return 1;
    }
    for (const auto& rec : r->records) {
      if (!rec.success()) {
        std::cerr << "warm-up request failed (" << muse::bench::BackendName(kind)
                  << "): " << muse::bench::StatusCodeName(rec.status_code) << ": " << rec.error
                  << "\n";
        return 1;
      }
    }
  }

  std::vector<BenchRun> runs;
  int exit_code = 0;
  for (size_t k = 0; k < rates.size(); ++k) {
    for (size_t b = 0; b < backends.size(); ++b) {
      const double rate = rates[k];
      run.arrival.rate = rate;
      run.backend = backends[b];
      // Each run draws fresh requests (same distribution, same lengths) so earlier runs do not
      // warm the server's prefix cache for later ones; ShareGPT prompts still cycle over one
      // sample. Backends alternate within a rate so a drift in machine load hits both.
      run.index_offset = static_cast<int64_t>(k * backends.size() + b) << 32;
      muse::bench::RunProgress counters;
      absl::StatusOr<muse::bench::RunResult> result;
      {
        std::unique_ptr<muse::bench::ProgressBar> bar;
        std::string label = std::isinf(rate) ? "rate inf" : absl::StrCat("rate ", rate);
        if (backends.size() > 1) label += absl::StrCat(" ", muse::bench::BackendName(run.backend));
        if (progress) {
          bar = std::make_unique<muse::bench::ProgressBar>(
              &counters, label, run.duration_s > 0 ? 0 : run.num_prompts, run.duration_s);
        }
        result = muse::bench::RunLoad(run, **workload, &counters);
      }
      if (!result.ok()) {
        std::cerr << result.status() << "\n";
        return 1;
      }
      BenchRun br;
      br.backend = muse::bench::BackendName(run.backend);
      br.request_rate = rate;
      br.burstiness = run.arrival.burstiness;
      br.max_concurrency = run.max_concurrency;
      br.result = std::move(*result);
      muse::bench::Finalize(&br, *slo);
      std::cout << muse::bench::FormatSummary(br, *slo) << std::flush;
      if (br.summary.failed > 0) exit_code = muse::cli::kExitFailure;  // the report is written
      runs.push_back(std::move(br));
    }
  }
  std::cout << muse::bench::FormatBackendComparison(runs) << std::flush;

  if (!result_json.empty()) {
    auto st2 =
        muse::bench::WriteFile(result_json, muse::bench::ResultJson(config, runs, *slo).dump(1));
    if (!st2.ok()) {
      std::cerr << st2 << "\n";
      return 1;
    }
  }
  if (!html_path.empty()) {
    auto st2 = muse::bench::WriteFile(html_path, muse::bench::HtmlReport(config, runs));
    if (!st2.ok()) {
      std::cerr << st2 << "\n";
      return 1;
    }
  }
  return exit_code;
} catch (const std::exception& e) {
  std::fprintf(stderr, "muse-bench: %s\n", e.what());
  return 1;
}
