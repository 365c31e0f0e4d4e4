// muse-generate: offline greedy generation straight on the model runner (no engine), for checks
// and for the batch-1 / batch-N decode benchmark.
//
//   muse-generate --model DIR (--prompt-ids 1,2,3 | --prompt TEXT) --max-tokens N [--batch B]
//                 [--dtype float32] [--threads T] [--quiet]
//   muse-generate --model DIR --prompts-file FILE [--concurrency C] [--temperature T] [--top-p P]
//                 [--top-k K] [--n N] [--seed S] [--max-tokens N]   (through the engine)
// Prints the generated ids of sequence 0 on stdout (and, with --prompt, the decoded text on the
// next line, using the model directory's tokenizer.json) and timing on stderr. With --batch B, B copies
// of the prompt decode together (same ids, so every sequence's output must equal sequence 0's).
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "src/common/logging.h"
#include "src/runtime/model_runner.h"
#include "src/tokenizer/tokenizer.h"
#include "tools/generate_engine.h"

namespace {

int Usage(const char* msg) {
  std::fprintf(stderr,
               "error: %s\nusage: muse-generate --model DIR (--prompt-ids 1,2,3 | --prompt TEXT) [--max-tokens N] "
               "[--batch B] [--device cpu|cuda[:N]] [--dtype float32|bfloat16|float16] [--threads T] "
               "[--quiet]\n"
               "       muse-generate --model DIR --prompts-file FILE [--concurrency C] "
               "[--temperature T] [--top-p P] [--top-k K] [--n N] [--seed S] [--max-tokens N]\n",
               msg);
  return 2;
}

int ArgMax(const float* row, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (row[i] > row[best]) best = i;
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace muse;
  runtime::RunnerOptions opts;
  std::vector<int32_t> prompt;
  int max_tokens = 16, batch = 1;
  bool quiet = false;
  std::string prompt_text;
  bool have_text = false;
  tools::PromptsFileOptions file_opts;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--model") {
      opts.model_dir = next();
    } else if (a == "--prompt-ids") {
      for (auto p : absl::StrSplit(next(), ',', absl::SkipEmpty())) {
        int v;
        if (!absl::SimpleAtoi(p, &v)) return Usage("--prompt-ids: not a comma-separated id list");
        prompt.push_back(v);
      }
    } else if (a == "--prompt") {
      prompt_text = next();
      have_text = true;
    } else if (a == "--prompts-file") {
      file_opts.path = next();
    } else if (a == "--concurrency") {
      if (!absl::SimpleAtoi(next(), &file_opts.concurrency)) return Usage("--concurrency");
    } else if (a == "--temperature") {
      if (!absl::SimpleAtof(next(), &file_opts.temperature)) return Usage("--temperature");
    } else if (a == "--top-p") {
      if (!absl::SimpleAtof(next(), &file_opts.top_p)) return Usage("--top-p");
    } else if (a == "--top-k") {
      if (!absl::SimpleAtoi(next(), &file_opts.top_k)) return Usage("--top-k");
    } else if (a == "--n") {
      if (!absl::SimpleAtoi(next(), &file_opts.n) || file_opts.n < 1) return Usage("--n");
    } else if (a == "--seed") {
      if (!absl::SimpleAtoi(next(), &file_opts.seed)) return Usage("--seed");
    } else if (a == "--max-tokens") {
      if (!absl::SimpleAtoi(next(), &max_tokens) || max_tokens < 1) return Usage("--max-tokens");
    } else if (a == "--batch") {
      if (!absl::SimpleAtoi(next(), &batch) || batch < 1) return Usage("--batch");
    } else if (a == "--dtype") {
      opts.dtype = next();
    } else if (a == "--device") {
      opts.device = next();
    } else if (a == "--threads") {
      if (!absl::SimpleAtoi(next(), &opts.num_threads)) return Usage("--threads");
    } else if (a == "--quiet") {
      quiet = true;
    } else {
      return Usage(("unknown flag " + a).c_str());
    }
  }
  if (opts.model_dir.empty()) return Usage("--model is required");
  if (!file_opts.path.empty()) {
    if (have_text || !prompt.empty()) return Usage("--prompts-file excludes --prompt/--prompt-ids");
    InitLogging(quiet ? "warn" : "info");
    file_opts.max_tokens = max_tokens;
    return tools::RunPromptsFile(opts, file_opts);
  }
  if (have_text == !prompt.empty()) return Usage("give exactly one of --prompt-ids and --prompt");
  InitLogging(quiet ? "warn" : "info");
  std::unique_ptr<tokenizer::Tokenizer> tok;
  if (have_text) {
    auto tok_or = tokenizer::Tokenizer::FromDirectory(opts.model_dir);
    if (!tok_or.ok()) {
      std::fprintf(stderr, "error: %s\n", tok_or.status().ToString().c_str());
      return 1;
    }
    tok = std::move(*tok_or);
    auto ids = tok->Encode(prompt_text);
    if (!ids.ok()) {
      std::fprintf(stderr, "error: --prompt: %s\n", ids.status().ToString().c_str());
      return 1;
    }
    prompt = std::move(*ids);
    if (prompt.empty()) return Usage("--prompt encodes to no tokens");
  }

  const int total = static_cast<int>(prompt.size()) + max_tokens;
  const int blocks_per_seq = (total + kernels::kKvBlockSize - 1) / kernels::kKvBlockSize;
  opts.num_kv_blocks = static_cast<int64_t>(blocks_per_seq) * batch;
  auto runner_or = runtime::CreateModelRunner(opts);
  if (!runner_or.ok()) {
    std::fprintf(stderr, "error: %s\n", runner_or.status().ToString().c_str());
    return 1;
  }
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
  if (auto st = step(true); !st.ok()) {
    std::fprintf(stderr, "error: %s\n", st.ToString().c_str());
    return 1;
  }
  auto t1 = Clock::now();
  for (int i = 1; i < max_tokens; ++i) {
    if (auto st = step(false); !st.ok()) {
      std::fprintf(stderr, "error: %s\n", st.ToString().c_str());
      return 1;
    }
  }
  auto t2 = Clock::now();
  for (int s = 1; s < batch; ++s) {
    if (seqs[s] != seqs[0]) {
      std::fprintf(stderr, "error: sequence %d diverged from sequence 0 in a batch\n", s);
      return 1;
    }
  }
  std::vector<int32_t> gen(seqs[0].begin() + prompt.size(), seqs[0].end());
  std::cout << absl::StrJoin(gen, ",") << std::endl;
  if (tok) {
    auto text = tok->Decode(gen, /*skip_special_tokens=*/true);
    if (!text.ok()) {
      std::fprintf(stderr, "error: decode: %s\n", text.status().ToString().c_str());
      return 1;
    }
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
}
