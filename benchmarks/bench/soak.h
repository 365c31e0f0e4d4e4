// `muse-bench --soak`: a reliability run against a real muse-server (issue 15). A closed loop of
// mixed requests -- prompt text, chat, chat with a PNG/JPEG image, n > 1, stop strings, streaming
// and unary -- where a share is cancelled by the client at a random moment (right after the call
// starts, after a random delay: before admission or during image encoding, after the first token,
// mid-decode after k tokens), a share carries a gRPC deadline that expires, a few streams are slow
// readers (nothing read for a while, then cancelled or drained), a few are invalid on purpose,
// and bursts far above the server's --max-waiting are fired at once (RESOURCE_EXHAUSTED, no crash).
//
// Every request must end with exactly one terminal status whose code is one its fate allows, an
// OK stream must carry exactly one `finished` message and a finish reason for each of its n
// samples. Then the server must settle and, from its /metrics (deltas over the measured run),
// /proc and log: no sequence running or waiting, no KV block referenced (the prefix cache only
// keeps unreferenced, evictable blocks: muse_kv_blocks_used counts referenced ones), per-code
// counts consistent with the client's (exact where the protocol allows, bounded where a cancel
// races the server's answer), RSS after the run within a tolerance of RSS after the warm-up, and
// no error-level log line outside an expected list.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace CLI {
class App;
}

namespace muse::bench {

struct SoakConfig {
  std::string target = "127.0.0.1:50051";
  std::string api_key;
  std::string model;
  int connections = 4;
  std::string metrics_host = "127.0.0.1";
  int metrics_port = 0;    // required: the server's --metrics-port
  int64_t server_pid = 0;  // 0 = the process listening on the target's port
  int http_port = 0;       // > 0: the server's --http-port; http_fraction of the requests go there
  double http_fraction = 0.15;
  std::string server_log;                        // optional: scanned for error-level lines
  std::vector<std::string> expected_log_errors;  // substrings of error lines that are expected

  int64_t num_requests = 1500;    // measured run, bursts included
  int64_t warmup_requests = 200;  // same mix, before the RSS baseline
  int64_t concurrency = 16;       // closed loop outside bursts
  int64_t max_tokens = 16;        // per sample, ordinary requests (drawn in [1, max_tokens])
  int64_t long_tokens = 512;      // deadline and slow-reader requests (ignore_eos)
  uint64_t seed = 0;

  double cancel_fraction = 0.30;
  double deadline_fraction = 0.05;
  double slow_reader_fraction = 0.01;
  double invalid_fraction = 0.01;
  double image_fraction = 0.25;
  double multi_sample_fraction = 0.15;  // n in [2, 4]
  double stop_fraction = 0.20;
  double unary_fraction = 0.15;
  int64_t image_pool = 256;         // distinct images (encoder-cache hits and misses both happen)
  int64_t bursts = 3;               // spread over the measured run
  int64_t burst_size = 96;          // requests fired at once, beyond the concurrency limit
  double slow_reader_hold_s = 1.5;  // longest time a slow reader reads nothing
  double settle_timeout_s = 60;     // for the server to go idle after the last request
  double stall_timeout_s = 120;     // no request ended for this long: the run is a hang, fail
  double rss_tolerance = 0.10;
};

struct SoakReport {
  nlohmann::json json;  // everything below, plus per-fate tables
  bool passed = false;
  std::string text;  // the human-readable table
};

// Runs the warm-up, the measured run and the checks. A non-OK status means the harness could not
// run (no server, no metrics); failed invariants are reported in SoakReport.
absl::StatusOr<SoakReport> RunSoak(const SoakConfig& config);

// The soak option group (soak_flags.cc); `enabled` is --soak.
void AddSoakFlags(CLI::App& app, SoakConfig* config, bool* enabled);
// Runs the soak, prints the report on stdout, writes `result_json` when set; the exit code.
int SoakMain(const SoakConfig& config, const std::string& result_json);

}  // namespace muse::bench
