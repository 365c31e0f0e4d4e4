// One benchmark request's client-side timeline, as vLLM's benchmark_serving records it.
// Times are seconds; `*_s` offsets are from the benchmark start (steady clock).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace muse::bench {

struct RequestRecord {
  int64_t index = 0;
  std::string priority;                // "interactive" | "batch" | "" (server default)
  double scheduled_s = 0;              // planned send time from the arrival process
  double start_s = 0;                  // actual send time (vLLM's `st`)
  double ttft_s = 0;                   // first token-bearing chunk - start; 0 if none arrived
  std::vector<double> itl_s;           // gaps between consecutive token-bearing chunks
  double e2e_s = 0;                    // last token-bearing chunk - start (vLLM's `latency`)
  double end_s = 0;                    // stream closed, from benchmark start
  std::vector<double> chunk_s;         // arrival of each token-bearing chunk, from benchmark start
  std::vector<int32_t> chunk_tokens;   // token ids in that chunk
  int64_t expected_prompt_tokens = 0;  // what the workload built (0 = unknown, e.g. text)
  int64_t expected_output_tokens = 0;  // max_tokens asked for
  int64_t prompt_tokens = 0;           // from the server's usage
  int64_t cached_tokens = 0;
  int64_t output_tokens = 0;  // usage.completion_tokens (streamed token count if absent)
  int status_code = 0;        // grpc::StatusCode; 0 = OK
  std::string error;
  bool success() const { return status_code == 0; }
};

// A token-bearing chunk arrived at `t` (from the benchmark start): the first sets TTFT, later ones
// add the gap to the previous chunk to the ITLs. Every backend records chunks through this.
inline void RecordChunk(RequestRecord* r, double t, int32_t tokens) {
  if (r->chunk_s.empty()) {
    r->ttft_s = t - r->start_s;
  } else {
    r->itl_s.push_back(t - r->chunk_s.back());
  }
  r->chunk_s.push_back(t);
  r->chunk_tokens.push_back(tokens);
}

// gRPC status code name ("DEADLINE_EXCEEDED") without depending on gRPC.
const char* StatusCodeName(int code);

}  // namespace muse::bench
