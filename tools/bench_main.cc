// muse-bench: load generator for muse-server's gRPC API with vLLM benchmark_serving metrics.
//   muse-bench --port 50051 --dataset-name random --random-input-len 128 --random-output-len 64
//              --num-prompts 200 --rates 1,2,4,inf --result-json r.json --html r.html
//   muse-bench --self-test --streams 2000     # client overhead against an in-process pacer
#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "benchmarks/bench/load_runner.h"
#include "benchmarks/bench/progress.h"
#include "benchmarks/bench/report.h"
#include "benchmarks/bench/self_test.h"

namespace {

using muse::bench::BenchRun;

const char kUsage[] = R"(usage: muse-bench [options]
server:     --host H (127.0.0.1) --port P (50051) | --target H:P, --api-key K, --model ID,
            --connections N (4), --wait-for-server S (30), --request-timeout S (0 = none)
arrivals:   --request-rate R (inf) | --rates R1,R2,... (sweep), --burstiness B (1 = Poisson),
            --max-concurrency C (0 = unlimited), --num-prompts N (1000) | --duration S, --seed N,
            --warmup N (1 request before the measured run)
workload:   --dataset-name random|sharegpt|image
            --random-input-len N (1024) --random-output-len N (128) --random-range-ratio R (0)
            --random-prefix-len N (0); --dataset-path FILE (ShareGPT JSON)
            --sharegpt-output-len N (0 = reply length), --ignore-eos,
            --image-sizes WxH,... (224x224) --image-repeat-ratio R (0),
            --priority-mix interactive:0.7,batch:0.3, --temperature T (0)
metrics:    --slo ttft:MS,tpot:MS,e2el:MS (goodput; --goodput is an alias)
output:     --result-json FILE, --html FILE, --no-progress, --quiet-requests
self-test:  --self-test [--streams N (2000) --messages N (20) --interval-ms MS (20)
            --first-delay-ms MS (50)]
            --serve-pacer --port P [--messages ...]: only run the pacer server (until SIGTERM),
            to calibrate a client in another process
)";

double ParseRate(const std::string& s) {
  if (s == "inf") return std::numeric_limits<double>::infinity();
  double v = 0;
  if (!absl::SimpleAtod(s, &v) || v <= 0) {
    std::cerr << "bad rate '" << s << "'\n";
    std::exit(2);
  }
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

int main(int argc, char** argv) {
  muse::bench::RunConfig run;
  muse::bench::WorkloadConfig wc;
  std::string host = "127.0.0.1", port = "50051", target, dataset = "random", slo_spec;
  std::string result_json, html_path;
  std::vector<double> rates = {std::numeric_limits<double>::infinity()};
  double wait_s = 30;
  int64_t warmup = 1;
  bool progress = true, self_test = false, serve_pacer = false;
  muse::bench::SelfTestConfig st;
  std::string cmdline = absl::StrJoin(std::vector<std::string>(argv, argv + argc), " ");

  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i], v;
    if (auto eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
      v = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else {
      const bool is_switch = a == "--ignore-eos" || a == "--no-progress" || a == "--self-test" || a == "--serve-pacer" ||
                             a == "--help" || a == "-h";
      if (!is_switch) {
        if (i + 1 >= argc) {
          std::cerr << "missing value for " << a << "\n" << kUsage;
          return 2;
        }
        v = argv[++i];
      }
    }
    auto num = [&](auto* out) {
      bool ok;
      if constexpr (std::is_same_v<std::remove_pointer_t<decltype(out)>, double>) {
        ok = absl::SimpleAtod(v, out);
      } else {
        ok = absl::SimpleAtoi(v, out);
      }
      if (!ok) {
        std::cerr << "bad number for " << a << ": '" << v << "'\n";
        std::exit(2);
      }
    };
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (a == "--host") { host = v;
    } else if (a == "--port") { port = v;
    } else if (a == "--target") { target = v;
    } else if (a == "--api-key") { run.api_key = v;
    } else if (a == "--model") { run.model = v;
    } else if (a == "--connections") { num(&run.connections);
    } else if (a == "--wait-for-server") { num(&wait_s);
    } else if (a == "--request-timeout") { num(&run.request_timeout_s);
    } else if (a == "--request-rate") { rates = {ParseRate(v)};
    } else if (a == "--rates") {
      rates.clear();
      for (absl::string_view r : absl::StrSplit(v, ',', absl::SkipEmpty())) rates.push_back(ParseRate(std::string(r)));
    } else if (a == "--burstiness") { num(&run.arrival.burstiness);
    } else if (a == "--max-concurrency") { num(&run.max_concurrency);
    } else if (a == "--num-prompts") { num(&run.num_prompts);
    } else if (a == "--duration") { num(&run.duration_s);
    } else if (a == "--seed") { num(&wc.seed);
    } else if (a == "--warmup") { num(&warmup);
    } else if (a == "--dataset-name") { dataset = v;
    } else if (a == "--dataset-path") { wc.dataset_path = v;
    } else if (a == "--random-input-len") { num(&wc.random_input_len);
    } else if (a == "--random-output-len") { num(&wc.random_output_len);
    } else if (a == "--random-range-ratio") { num(&wc.random_range_ratio);
    } else if (a == "--random-prefix-len") { num(&wc.random_prefix_len);
    } else if (a == "--sharegpt-output-len") { num(&wc.sharegpt_output_len);
    } else if (a == "--ignore-eos") { wc.ignore_eos = true;
    } else if (a == "--image-sizes") {
      auto s = muse::bench::ParseImageSizes(v);
      if (!s.ok()) { std::cerr << s.status().message() << "\n"; return 2; }
      wc.image_sizes = *s;
    } else if (a == "--image-repeat-ratio") { num(&wc.image_repeat_ratio);
    } else if (a == "--priority-mix") {
      auto m = muse::bench::ParsePriorityMix(v);
      if (!m.ok()) { std::cerr << m.status().message() << "\n"; return 2; }
      wc.priority_mix = *m;
    } else if (a == "--temperature") {
      double t;
      num(&t);
      run.temperature = static_cast<float>(t);
    } else if (a == "--slo" || a == "--goodput") { slo_spec = v;
    } else if (a == "--result-json") { result_json = v;
    } else if (a == "--html") { html_path = v;
    } else if (a == "--no-progress") { progress = false;
    } else if (a == "--self-test") { self_test = true;
    } else if (a == "--serve-pacer") { serve_pacer = true;
    } else if (a == "--streams") { num(&st.streams);
    } else if (a == "--messages") { num(&st.pacer.messages);
    } else if (a == "--interval-ms") { num(&st.pacer.interval_s); st.pacer.interval_s /= 1000;
    } else if (a == "--first-delay-ms") { num(&st.pacer.first_delay_s); st.pacer.first_delay_s /= 1000;
    } else {
      std::cerr << "unknown option " << a << "\n" << kUsage;
      return 2;
    }
  }

  if (serve_pacer) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before gRPC starts threads
    int p = 0;
    if (!absl::SimpleAtoi(port, &p)) return 2;
    auto pacer = muse::bench::PacerServer::Start(st.pacer, p);
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
        std::cerr << "--duration with rate inf needs --max-concurrency (else it opens streams "
                     "without bound)\n";
        return 2;
      }
    }
  }
  run.target = target.empty() ? absl::StrCat(host, ":", port) : target;
  run.arrival.seed = wc.seed;
  auto slo = muse::bench::ParseSlo(slo_spec);
  if (!slo.ok()) {
    std::cerr << slo.status().message() << "\n";
    return 2;
  }
  if (dataset == "random") {
    wc.kind = muse::bench::WorkloadKind::kRandom;
  } else if (dataset == "sharegpt") {
    wc.kind = muse::bench::WorkloadKind::kShareGpt;
    wc.sharegpt_max_samples = run.duration_s > 0 ? 1000 : run.num_prompts;
  } else if (dataset == "image") {
    wc.kind = muse::bench::WorkloadKind::kImage;
  } else {
    std::cerr << "--dataset-name must be random, sharegpt or image\n";
    return 2;
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
      {"random_input_len", wc.random_input_len},
      {"random_output_len", wc.random_output_len},
      {"random_range_ratio", wc.random_range_ratio},
      {"random_prefix_len", wc.random_prefix_len},
      {"image_repeat_ratio", wc.image_repeat_ratio},
      {"priority_mix", wc.priority_mix},
      {"temperature", run.temperature},
      {"api_key_set", !run.api_key.empty()},
  };

  if (warmup > 0) {
    // Warm-up requests use indices past the measured ones' so the measured set is unchanged.
    muse::bench::RunConfig w = run;
    w.arrival.rate = std::numeric_limits<double>::infinity();
    w.duration_s = 0;
    w.num_prompts = warmup;
    w.max_concurrency = 1;
    w.request_id_prefix = "warmup-";
    w.index_offset = int64_t{1} << 40;
    auto r = muse::bench::RunLoad(w, **workload, nullptr);
    if (!r.ok()) {
      std::cerr << "warm-up: " << r.status() << "\n";
      return 1;
    }
    for (const auto& rec : r->records) {
      if (!rec.success()) {
        std::cerr << "warm-up request failed: " << muse::bench::StatusCodeName(rec.status_code)
                  << ": " << rec.error << "\n";
        return 1;
      }
    }
  }

  std::vector<BenchRun> runs;
  int exit_code = 0;
  for (size_t k = 0; k < rates.size(); ++k) {
    const double rate = rates[k];
    run.arrival.rate = rate;
    // Each sweep point draws fresh requests (same distribution) so earlier points do not warm
    // the server's prefix cache for later ones; ShareGPT prompts still cycle over one sample.
    run.index_offset = static_cast<int64_t>(k) << 32;
    muse::bench::RunProgress counters;
    absl::StatusOr<muse::bench::RunResult> result;
    {
      std::unique_ptr<muse::bench::ProgressBar> bar;
      const std::string label = std::isinf(rate) ? "rate inf" : absl::StrCat("rate ", rate);
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
    br.request_rate = rate;
    br.burstiness = run.arrival.burstiness;
    br.max_concurrency = run.max_concurrency;
    br.result = std::move(*result);
    muse::bench::Finalize(&br, *slo);
    std::cout << muse::bench::FormatSummary(br, *slo) << std::flush;
    if (br.summary.failed > 0) exit_code = 3;
    runs.push_back(std::move(br));
  }

  if (!result_json.empty()) {
    auto st2 = muse::bench::WriteFile(result_json, muse::bench::ResultJson(config, runs, *slo).dump(1));
    if (!st2.ok()) { std::cerr << st2 << "\n"; return 1; }
  }
  if (!html_path.empty()) {
    auto st2 = muse::bench::WriteFile(html_path, muse::bench::HtmlReport(config, runs));
    if (!st2.ok()) { std::cerr << st2 << "\n"; return 1; }
  }
  return exit_code;
}
