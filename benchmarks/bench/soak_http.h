// The soak's HTTP requests: the same seeded requests sent to the server's OpenAI-compatible API
// (/v1/chat/completions for messages, /v1/completions for a prompt; SSE streaming for streams,
// "stream": false for unary ones) over a blocking HTTP/1.1 connection on the calling thread. The
// fate is carried out by closing the connection (at start, after a delay, after the first or k-th
// SSE event), a client-side time limit for `deadline` (recorded DEADLINE_EXCEEDED, as a gRPC client
// would), or by not reading for a while (slow readers). The outcome's code is the HTTP status as
// the server names it in muse_requests_total (200 OK, 400 INVALID_ARGUMENT, 429
// RESOURCE_EXHAUSTED, 503 UNAVAILABLE, ...), CANCELLED when the client closed first, DATA_LOSS for
// a 200 whose body is incomplete.
#pragma once

#include <string>

#include "benchmarks/bench/soak_client.h"
#include "benchmarks/bench/soak_plan.h"

namespace muse::bench {

// The JSON body for `plan` (OpenAI request shape, vLLM's ignore_eos).
std::string SoakHttpBody(const SoakPlan& plan);
// Runs the request to its end and fills `out` (terminal, code, tokens = SSE events or completion
// tokens, finished_messages, samples_finished).
void RunSoakHttp(const std::string& host, int port, const SoakPlan& plan, SoakOutcome* out);

}  // namespace muse::bench
