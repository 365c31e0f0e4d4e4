// Structured output in the engine (issue #17): muse-tiny (random weights, the 128k Llama 3
// vocabulary) on the CPU runner, B requests decoding together, without and with a tool-call JSON
// schema on every request. Reports generated tokens per second and mean step time for both, and
// for the constrained run the masks computed, their compute time and the part of it the engine
// thread waited for after the forward pass (the rest was hidden behind it). Markdown to stdout.
//
//   constrained_step_benchmark [--threads N (2)] [--requests B (8)] [--max-tokens T (48)]
//                              [--model-dir DIR (models/muse-tiny)]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "src/common/cli.h"
#include "src/common/logging.h"
#include "src/engine/engine_core.h"
#include "src/runtime/model_runner.h"
#include "src/structured/compile.h"
#include "src/structured/matcher.h"
#include "src/tokenizer/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace engine = muse::engine;

// A typical tool's parameters (strict mode: compact, every property in order).
constexpr char kToolSchema[] = R"({"type":"object","properties":{
  "location":{"type":"string"},
  "unit":{"type":"string","enum":["celsius","fahrenheit"]},
  "days":{"type":"integer","minimum":1,"maximum":14},
  "hourly":{"type":"boolean"},
  "fields":{"type":"array","items":{"type":"string"},"maxItems":8}},
  "required":["location","unit","days","hourly","fields"],"additionalProperties":false})";

struct Run {
  double seconds = 0;
  int64_t tokens = 0;
  int64_t stops = 0;
  engine::EngineStats stats;
};

absl::StatusOr<Run> RunEngine(muse::runtime::ModelRunner* runner, int threads, int requests,
                              int max_tokens,
                              std::shared_ptr<const muse::structured::CompiledGrammar> grammar) {
  engine::EngineOptions eo;
  eo.seed = 1;
  eo.sampling_threads = threads;
  ASSIGN_OR_RETURN(auto core, engine::EngineCore::Create(runner, eo));
  std::vector<std::shared_ptr<engine::OutputStream>> streams;
  for (int i = 0; i < requests; ++i) {
    engine::Request r;
    r.id = absl::StrCat("r", i);
    for (int t = 0; t < 32; ++t)
      r.prompt_token_ids.push_back(1000 + (i * 7919 + t * 104729) % 9000);
    r.sampling.max_tokens = max_tokens;
    r.sampling.temperature = 1.0f;
    r.sampling.seed = 100 + i;
    r.sampling.ignore_eos = grammar == nullptr;  // free runs go the full length
    r.sampling.grammar = grammar;
    streams.push_back(std::make_shared<engine::OutputStream>(r.id));
    RETURN_IF_ERROR(core->AddRequest(r, streams.back()));
  }
  Run run;
  const auto t0 = Clock::now();
  while (core->HasWork()) RETURN_IF_ERROR(core->Step());
  run.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  for (auto& s : streams) {
    while (auto out = s->TryNext()) {
      if (!out->error.ok()) return out->error;
      for (const auto& d : out->samples) {
        run.tokens += static_cast<int64_t>(d.token_ids.size());
        if (d.finish_reason == engine::FinishReason::kStop) ++run.stops;
      }
    }
  }
  run.stats = core->Stats();
  return run;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, requests = 8, max_tokens = 48;
  std::string model_dir = MUSE_SOURCE_DIR "/models/muse-tiny";
  CLI::App app("Engine decode with and without a JSON schema on every request (muse-tiny, CPU).",
               "constrained_step_benchmark");
  muse::cli::ConfigureApp(app);
  app.add_option("--threads", threads, "runner and sampling threads")->check(muse::cli::AtLeast(1));
  app.add_option("--requests", requests, "requests decoding together")
      ->check(muse::cli::AtLeast(1));
  app.add_option("--max-tokens", max_tokens, "tokens per request")->check(muse::cli::AtLeast(1));
  app.add_option("--model-dir", model_dir, "checkpoint + tokenizer");
  if (auto rc = muse::cli::ParseCommandLine(app, argc, argv)) return *rc;
  muse::InitLogging("warn");

  muse::runtime::RunnerOptions o;
  o.model_dir = model_dir;
  o.device = "cpu";
  o.num_threads = threads;
  auto runner = muse::runtime::CreateModelRunner(o);
  if (!runner.ok()) {
    std::fprintf(stderr, "runner: %s\n", runner.status().ToString().c_str());
    return 1;
  }
  const auto& cfg = (*runner)->config();
  auto tok = muse::tokenizer::Tokenizer::FromDirectory(model_dir);
  if (!tok.ok()) {
    std::fprintf(stderr, "tokenizer: %s\n", tok.status().ToString().c_str());
    return 1;
  }
  std::vector<int32_t> eos(cfg.eos_token_ids.begin(), cfg.eos_token_ids.end());
  auto vocab = muse::structured::TokenVocabulary::FromTokenizer(
      **tok, static_cast<int>(cfg.vocab_size), eos);
  if (!vocab.ok()) {
    std::fprintf(stderr, "vocabulary: %s\n", vocab.status().ToString().c_str());
    return 1;
  }
  auto g = muse::structured::CompileJsonSchema(kToolSchema);
  if (!g.ok()) {
    std::fprintf(stderr, "schema: %s\n", g.status().ToString().c_str());
    return 1;
  }
  auto grammar = muse::structured::CompiledGrammar::Create(*std::move(g), *vocab);
  if (!grammar.ok()) {
    std::fprintf(stderr, "grammar: %s\n", grammar.status().ToString().c_str());
    return 1;
  }
  (*grammar)->PrecomputeMasks();  // as the server's GrammarCache does when it compiles
  std::printf(
      "muse-tiny (vocab %lld), CPU runner, %d threads, %d requests x up to %d tokens, "
      "temperature 1\n\n",
      static_cast<long long>(cfg.vocab_size), threads, requests, max_tokens);
  std::printf(
      "| run | tokens | finished stop | steps | mean step ms | tokens/s | masks | mask compute "
      "ms | mask wait ms | hidden |\n|---|---|---|---|---|---|---|---|---|---|\n");
  double free_rate = 0;
  for (const bool constrained : {false, true}) {
    auto run =
        RunEngine(runner->get(), threads, requests, max_tokens, constrained ? *grammar : nullptr);
    if (!run.ok()) {
      std::fprintf(stderr, "run: %s\n", run.status().ToString().c_str());
      return 1;
    }
    const engine::EngineStats& s = run->stats;
    const double rate = static_cast<double>(run->tokens) / run->seconds;
    if (!constrained) free_rate = rate;
    const double compute = absl::ToDoubleMilliseconds(s.sum_token_mask_compute);
    const double wait = absl::ToDoubleMilliseconds(s.sum_token_mask_wait);
    std::printf(
        "| %s | %lld | %lld | %lld | %.2f | %.0f%s | %lld | %.1f | %.1f | %s |\n",
        constrained ? "tool JSON schema" : "free", static_cast<long long>(run->tokens),
        static_cast<long long>(run->stops), static_cast<long long>(s.num_steps),
        absl::ToDoubleMilliseconds(s.sum_step) / std::max<int64_t>(1, s.num_steps), rate,
        constrained ? absl::StrCat(" (", absl::SixDigits(rate / free_rate), "x)").c_str() : "",
        static_cast<long long>(s.num_token_masks), compute, wait,
        compute > 0 ? absl::StrCat(absl::SixDigits(100 * (1 - wait / compute)), " %").c_str()
                    : "-");
  }
  return 0;
}
