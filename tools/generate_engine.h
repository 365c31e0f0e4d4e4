// muse-generate --prompts-file: many prompts through the continuous-batching engine at once.
#pragma once

#include <string>

#include "src/runtime/model_runner.h"

namespace muse::tools {

struct PromptsFileOptions {
  std::string path;     // one prompt per line; "ids:1,2,3" lines are token ids
  int concurrency = 0;  // max requests in flight (0 = all at once)
  int max_tokens = 16;
  float temperature = 0.0f;  // greedy by default
  float top_p = 1.0f;
  int top_k = 0;
  int n = 1;
  uint64_t seed = 0;  // > 0: request i uses seed + i
  int max_num_seqs = 256;
  int max_num_batched_tokens = 2048;
};

// Prints one JSON line per request (in file order) on stdout and a throughput summary on stderr.
// Returns the process exit code.
int RunPromptsFile(const runtime::RunnerOptions& runner_options, const PromptsFileOptions& options);

}  // namespace muse::tools
