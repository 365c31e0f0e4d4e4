// The soak harness's requests: each one a pure function of (config, seed, index) -- its input
// (prompt text, chat, chat with a PNG or JPEG image), sampling (n, seeds, logprobs), stop strings,
// and its fate (what the client does to it) with the codes that fate may legitimately end with.
#pragma once

#include <cstdint>
#include <set>
#include <string>

#include "muse/v1/inference.pb.h"

namespace muse::bench {

struct SoakConfig;

enum class Fate {
  kComplete,               // read to the end
  kCancelAtStart,          // TryCancel right after StartCall (may never reach the server)
  kCancelAfterDelay,       // after a random few ms: before admission, in the image encoder, prefill
  kCancelAfterFirstToken,  // streams; unary ones are cancelled after a delay instead
  kCancelMidDecode,        // after k tokens (streams; unary: after a delay)
  kDeadline,               // a gRPC deadline far shorter than the generation
  kSlowThenCancel,         // a stream read by nobody for a while, then cancelled
  kSlowThenRead,           // a stream read by nobody for a while, then drained
  kInvalid,                // sampling.top_p = 0: INVALID_ARGUMENT
  kBurst,                  // part of a burst above --max-waiting
};
inline constexpr int kNumFates = 10;
const char* FateName(Fate f);

enum class SoakInput { kPrompt, kChat, kImage };
const char* InputName(SoakInput i);

struct SoakPlan {
  int64_t index = 0;
  Fate fate = Fate::kComplete;
  SoakInput input = SoakInput::kPrompt;
  bool unary = false;  // GenerateUnary; over HTTP: "stream": false
  bool http = false;   // sent to the OpenAI-compatible HTTP API instead of gRPC (soak_http.h)
  int n = 1;
  double delay_s = 0;               // cancel delay, deadline, or slow-reader hold
  int64_t cancel_after_tokens = 0;  // kCancelMidDecode
  v1::GenerateRequest request;
};

// `supports_images`: from ModelInfo; without it no image requests are drawn.
SoakPlan MakeSoakPlan(const SoakConfig& config, bool supports_images, int64_t index, bool burst);

// gRPC codes (grpc::StatusCode values) a request with this fate may end with on the client.
const std::set<int>& AllowedCodes(Fate f);

}  // namespace muse::bench
