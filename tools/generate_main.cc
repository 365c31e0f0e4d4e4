// muse-generate: offline greedy generation straight on the model runner (no engine), for checks
// and for the batch-1 / batch-N decode benchmark. `muse-generate --help` for the flags.
//
//   muse-generate --model DIR (--prompt-ids 1,2,3 | --prompt TEXT) --max-tokens N [--batch B]
//                 [--dtype float32] [--threads T] [--quiet]
//   muse-generate --model DIR --prompts-file FILE [--concurrency C] [--temperature T] [--top-p P]
//                 [--top-k K] [--n N] [--seed S] [--max-tokens N]   (through the engine)
// Prints the generated ids of sequence 0 on stdout (and, with --prompt, the decoded text on the
// next line, using the model directory's tokenizer.json); logs and timing go to stderr. With
// --batch B, B copies of the prompt decode together (same ids, so every sequence's output must
// equal sequence 0's).
#include <chrono>
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "src/common/cli.h"
#include "src/common/logging.h"
#include "src/runtime/model_runner.h"
#include "src/tokenizer/tokenizer.h"
#include "tools/generate_engine.h"

namespace {

using muse::cli::kExitFailure;

int Fail(const std::string& msg) {
  std::fprintf(stderr, "muse-generate: %s\n", msg.c_str());
  return kExitFailure;
}

int ArgMax(const float* row, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (row[i] > row[best]) best = i;
  return best;
}

}  // namespace

int main(int argc, char** argv) try {
  using namespace muse;
  using cli::AtLeast;
  runtime::RunnerOptions opts;
  std::vector<int32_t> prompt;
  int max_tokens = 16, batch = 1;
  bool quiet = false;
  std::string prompt_text;
  tools::PromptsFileOptions file_opts;

  CLI::App app(
      "Greedy generation straight on the model runner, or many prompts through the engine.",
      "muse-generate");
  cli::ConfigureApp(app);
  app.add_option("--model", opts.model_dir, "model directory")
      ->required()
      ->check(CLI::ExistingDirectory);
  CLI::Option_group* input = app.add_option_group("input", "what to generate from (exactly one)");
  input->add_option("--prompt-ids", prompt, "comma-separated token ids")
      ->delimiter(',')
      ->allow_extra_args(false);
  input->add_option("--prompt", prompt_text, "text, encoded with the model's tokenizer.json")
      ->check(cli::kNonEmpty);
  CLI::Option* file =
      input
          ->add_option("--prompts-file", file_opts.path,
                       "one prompt per line (\"ids:1,2,3\" = token ids), all through the engine; "
                       "one JSON line per prompt")
          ->check(CLI::ExistingFile);
  input->require_option(1);
  app.add_option("--max-tokens", max_tokens, "tokens to generate")->check(AtLeast(1));
  app.add_option("--batch", batch, "decode B copies of the prompt together")
      ->check(AtLeast(1))
      ->excludes(file);
  app.add_option("--device", opts.device, "cpu, cuda or cuda:N");
  app.add_option("--dtype", opts.dtype, "weight and activation dtype")
      ->check(CLI::IsMember({"float32", "fp32", "bfloat16", "bf16", "float16", "fp16"}));
  app.add_option("--threads", opts.num_threads, "CPU threads; 0 = every CPU in the affinity mask")
      ->check(AtLeast(0));
  app.add_flag("--quiet", quiet, "log warnings and errors only");
  // Sampling and concurrency apply to the engine path only (the direct path is greedy).
  app.add_option("--concurrency", file_opts.concurrency, "most requests in flight; 0 = all")
      ->check(AtLeast(0))
      ->needs(file);
  app.add_option("--temperature", file_opts.temperature, "0 = greedy")
      ->check(AtLeast(0.0f))
      ->needs(file);
  app.add_option("--top-p", file_opts.top_p, "nucleus sampling mass")
      ->check(cli::kTopP)
      ->needs(file);
  app.add_option("--top-k", file_opts.top_k, "-1 or 0 = off")->check(AtLeast(-1))->needs(file);
  app.add_option("--n", file_opts.n, "samples per prompt")->check(AtLeast(1))->needs(file);
  app.add_option("--seed", file_opts.seed, "> 0: request i samples with seed + i")
      ->check(cli::kUnsigned)
      ->needs(file);
  if (auto rc = cli::ParseCommandLine(app, argc, argv)) return *rc;

  InitLogging(quiet ? "warn" : "info");
  if (!file_opts.path.empty()) {
    file_opts.max_tokens = max_tokens;
    return tools::RunPromptsFile(opts, file_opts);
  }
  std::unique_ptr<tokenizer::Tokenizer> tok;
  if (!prompt_text.empty()) {
    auto tok_or = tokenizer::Tokenizer::FromDirectory(opts.model_dir);
    if (!tok_or.ok()) return Fail(tok_or.status().ToString());
    tok = std::move(*tok_or);
    auto ids = tok->Encode(prompt_text);
    if (!ids.ok()) return Fail("--prompt: " + ids.status().ToString());
    prompt = std::move(*ids);
    if (prompt.empty()) {
      std::fprintf(stderr, "muse-generate: --prompt encodes to no tokens\n");
      return cli::kExitUsage;
    }
  }
  if (prompt.empty()) {
    std::fprintf(stderr, "muse-generate: --prompt-ids: no ids\n");
    return cli::kExitUsage;
  }

  const int total = static_cast<int>(prompt.size()) + max_tokens;
  const int blocks_per_seq = (total + kernels::kKvBlockSize - 1) / kernels::kKvBlockSize;
  opts.num_kv_blocks = static_cast<int64_t>(blocks_per_seq) * batch;
  auto runner_or = runtime::CreateModelRunner(opts);
  if (!runner_or.ok()) return Fail(runner_or.status().ToString());
  auto& runner = **runner_or;
  const int vocab = static_cast<int>(runner.config().vocab_size);

  std::vector<std::vector<int32_t>> seqs(batch, prompt);
  auto step = [&](bool prefill) -> absl::Status {
    models::Batch b;
    b.max_blocks_per_seq = blocks_per_seq;
    b.query_start_loc.push_back(0);
    for (int s = 0; s < batch; ++s) {
      const int len = static_cast<int>(seqs[s].size());
      const int begin = prefill ? 0 : len - 1;
      for (int p = begin; p < len; ++p) {
        b.input_ids.push_back(seqs[s][p]);
        b.positions.push_back(p);
        const int blk = s * blocks_per_seq + p / kernels::kKvBlockSize;
        b.slot_mapping.push_back(static_cast<int64_t>(blk) * kernels::kKvBlockSize +
                                 p % kernels::kKvBlockSize);
      }
      b.logits_indices.push_back(static_cast<int32_t>(b.input_ids.size()) - 1);
      b.query_start_loc.push_back(static_cast<int32_t>(b.input_ids.size()));
      b.seq_lens.push_back(len);
      for (int j = 0; j < blocks_per_seq; ++j) b.block_tables.push_back(s * blocks_per_seq + j);
    }
    models::Logits logits;
    RETURN_IF_ERROR(runner.Forward(b, &logits));
    for (int s = 0; s < batch; ++s) seqs[s].push_back(ArgMax(logits.row(s), vocab));
    return absl::OkStatus();
  };

  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  if (auto st = step(true); !st.ok()) return Fail(st.ToString());
  auto t1 = Clock::now();
  for (int i = 1; i < max_tokens; ++i) {
    if (auto st = step(false); !st.ok()) return Fail(st.ToString());
  }
  auto t2 = Clock::now();
  for (int s = 1; s < batch; ++s) {
    if (seqs[s] != seqs[0])
      return Fail(absl::StrCat("sequence ", s, " diverged from sequence 0 in a batch"));
  }
  std::vector<int32_t> gen(seqs[0].begin() + prompt.size(), seqs[0].end());
  std::cout << absl::StrJoin(gen, ",") << std::endl;
  if (tok) {
    auto text = tok->Decode(gen, /*skip_special_tokens=*/true);
    if (!text.ok()) return Fail("decode: " + text.status().ToString());
    std::cout << *text << std::endl;
  }
  const double prefill_s = std::chrono::duration<double>(t1 - t0).count();
  const double decode_s = std::chrono::duration<double>(t2 - t1).count();
  const int decode_steps = max_tokens - 1;
  std::fprintf(stderr,
               "prefill: %zu tokens x %d seqs in %.1f ms; decode: %d steps x %d seqs in %.1f ms "
               "= %.2f tok/s (%.2f ms/step); overall %.2f tok/s\n",
               prompt.size(), batch, prefill_s * 1e3, decode_steps, batch, decode_s * 1e3,
               decode_steps > 0 ? decode_steps * batch / decode_s : 0.0,
               decode_steps > 0 ? decode_s * 1e3 / decode_steps : 0.0,
               max_tokens * batch / (prefill_s + decode_s));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "muse-generate: %s\n", e.what());
  return 1;
}
