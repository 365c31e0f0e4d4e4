#include "tools/generate_engine.h"

#include <chrono>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "src/engine/engine.h"
#include "src/server/tokenizer_text.h"
#include "src/tokenizer/tokenizer.h"

namespace muse::tools {
namespace {

struct Job {
  std::string prompt;
  std::vector<int32_t> ids;
  std::shared_ptr<engine::OutputStream> stream;
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::string> text;
  std::vector<std::string> finish;
  engine::RequestOutput last;
};

absl::StatusOr<std::vector<Job>> ReadPrompts(const std::string& path,
                                             const tokenizer::Tokenizer* tok) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("--prompts-file: cannot open " + path);
  std::vector<Job> jobs;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    Job job;
    job.prompt = line;
    if (absl::StartsWith(line, "ids:")) {
      for (auto p : absl::StrSplit(line.substr(4), ',', absl::SkipEmpty())) {
        int v;
        if (!absl::SimpleAtoi(p, &v))
          return absl::InvalidArgumentError(absl::StrCat(path, ":", line_no, ": bad token id"));
        job.ids.push_back(v);
      }
    } else {
      if (tok == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ":", line_no, ": text prompt but the model directory has no tokenizer.json"));
      }
      auto ids = tok->Encode(line);
      if (!ids.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ":", line_no, ": ", ids.status().message()));
      }
      job.ids = std::move(*ids);
    }
    if (job.ids.empty())
      return absl::InvalidArgumentError(absl::StrCat(path, ":", line_no, ": empty prompt"));
    jobs.push_back(std::move(job));
  }
  if (jobs.empty()) return absl::InvalidArgumentError("--prompts-file: no prompts in " + path);
  return jobs;
}

}  // namespace

int RunPromptsFile(const runtime::RunnerOptions& runner_options, const PromptsFileOptions& o) {
  std::unique_ptr<tokenizer::Tokenizer> tok;
  if (auto t = tokenizer::Tokenizer::FromDirectory(runner_options.model_dir); t.ok()) {
    tok = std::move(*t);
  }
  auto jobs_or = ReadPrompts(o.path, tok.get());
  if (!jobs_or.ok()) {
    std::fprintf(stderr, "muse-generate: %s\n", jobs_or.status().ToString().c_str());
    return 1;
  }
  std::vector<Job>& jobs = *jobs_or;

  auto runner = runtime::CreateModelRunner(runner_options);
  if (!runner.ok()) {
    std::fprintf(stderr, "muse-generate: %s\n", runner.status().ToString().c_str());
    return 1;
  }
  engine::EngineOptions eo;
  eo.scheduler.max_num_seqs = o.max_num_seqs;
  eo.scheduler.max_num_batched_tokens = o.max_num_batched_tokens;
  eo.scheduler.max_waiting = static_cast<int>(jobs.size()) + 1;
  if (tok) eo.text_decoder = std::make_shared<server::TokenizerDecoderFactory>(tok.get());
  auto eng = engine::Engine::Create(std::move(*runner), eo);
  if (!eng.ok()) {
    std::fprintf(stderr, "muse-generate: %s\n", eng.status().ToString().c_str());
    return 1;
  }

  const size_t window = o.concurrency > 0 ? static_cast<size_t>(o.concurrency) : jobs.size();
  auto submit = [&](size_t i) -> absl::Status {
    engine::Request r;
    r.id = absl::StrCat("prompt-", i);
    r.prompt_token_ids = jobs[i].ids;
    r.sampling.max_tokens = o.max_tokens;
    r.sampling.temperature = o.temperature;
    r.sampling.top_p = o.top_p;
    r.sampling.top_k = o.top_k;
    r.sampling.n = o.n;
    if (o.seed > 0) r.sampling.seed = o.seed + i;
    ASSIGN_OR_RETURN(jobs[i].stream, (*eng)->AddRequest(std::move(r)));
    jobs[i].tokens.resize(o.n);
    jobs[i].text.resize(o.n);
    jobs[i].finish.resize(o.n);
    return absl::OkStatus();
  };

  const auto t0 = std::chrono::steady_clock::now();
  size_t next = 0;
  std::deque<size_t> in_flight;
  int64_t generated = 0, prompt_tokens = 0, cached = 0;
  int exit_code = 0;
  while (next < jobs.size() || !in_flight.empty()) {
    while (next < jobs.size() && in_flight.size() < window) {
      if (auto st = submit(next); !st.ok()) {
        std::fprintf(stderr, "muse-generate: prompt %zu: %s\n", next, st.ToString().c_str());
        return 1;
      }
      in_flight.push_back(next++);
    }
    // Drain the oldest request; the others keep running in the engine meanwhile.
    Job& job = jobs[in_flight.front()];
    while (auto out = job.stream->Next()) {
      for (const auto& s : out->samples) {
        job.tokens[s.index].insert(job.tokens[s.index].end(), s.token_ids.begin(),
                                   s.token_ids.end());
        job.text[s.index] += s.text;
        if (s.finish_reason) job.finish[s.index] = engine::FinishReasonName(*s.finish_reason);
      }
      if (out->finished) {
        if (!out->error.ok()) {
          std::fprintf(stderr, "muse-generate: %s: %s\n", out->request_id.c_str(),
                       out->error.ToString().c_str());
          exit_code = 1;
        }
        job.last = std::move(*out);
        break;
      }
    }
    generated += job.last.usage.completion_tokens;
    prompt_tokens += job.last.usage.prompt_tokens;
    cached += job.last.usage.cached_tokens;
    in_flight.pop_front();
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  for (size_t i = 0; i < jobs.size(); ++i) {
    const Job& j = jobs[i];
    nlohmann::json line = {
        {"index", i},
        {"prompt_tokens", j.last.usage.prompt_tokens},
        {"cached_tokens", j.last.usage.cached_tokens},
        {"ttft_ms", absl::ToDoubleMilliseconds(j.last.timings.ttft)},
        {"e2e_ms", absl::ToDoubleMilliseconds(j.last.timings.e2e)},
    };
    for (int s = 0; s < o.n; ++s) {
      line["samples"].push_back(
          {{"token_ids", j.tokens[s]}, {"text", j.text[s]}, {"finish_reason", j.finish[s]}});
    }
    std::cout << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  }
  std::cout.flush();
  const auto stats = (*eng)->Stats();
  std::fprintf(stderr,
               "%zu requests, %lld prompt tokens (%lld from the prefix cache), %lld generated "
               "in %.2f s = %.1f generated tok/s; %lld engine steps, %lld preemptions\n",
               jobs.size(), static_cast<long long>(prompt_tokens), static_cast<long long>(cached),
               static_cast<long long>(generated), secs, generated / secs,
               static_cast<long long>(stats.num_steps),
               static_cast<long long>(stats.num_preemptions));
  return exit_code;
}

}  // namespace muse::tools
