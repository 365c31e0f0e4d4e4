// Prometheus metrics of the API layer, rendered in the text exposition format. Counters and
// histograms are updated by gRPC threads (one mutex; a few updates per request); gauges are read
// from Engine::Stats() and the tenant limiter at scrape time.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "src/engine/engine_core.h"
#include "src/engine/request.h"
#include "src/server/auth.h"

namespace muse::structured {
struct GrammarCacheStats;
}  // namespace muse::structured

namespace muse::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds)
      : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}
  void Observe(double v);
  void Render(const std::string& name, const std::string& help, std::string* out) const;

 private:
  std::vector<double> bounds_;
  std::vector<int64_t> counts_;  // per bucket (non-cumulative); last = +Inf
  double sum_ = 0;
};

// Encoder-cache counters, read at scrape time (EncoderCache keeps them).
struct ImageCacheStats {
  uint64_t hits = 0, misses = 0, evictions = 0;
  int64_t bytes = 0;
  int64_t entries = 0;
};

class Metrics {
 public:
  Metrics();

  // One finished RPC: method ("Generate", ...) and gRPC code name ("OK", "INVALID_ARGUMENT").
  void RecordRequest(const std::string& method, const std::string& code);
  // A finished generation (any outcome that reached the engine).
  void RecordGeneration(const engine::Usage& usage, const engine::Timings& timings,
                        const std::string& finish_reason);

  // One EncodeBatch call of the image-encoder worker.
  void RecordImageEncode(int64_t images, double seconds);
  void RecordAudioEncode(int64_t clips, double seconds);  // the audio tower's clips of one batch

  // One compile of a structured-output constraint (kind "json_schema", "regex", ...).
  void RecordGrammarCompile(const std::string& kind, double seconds, bool ok);

  // `stats` and `tenants` are read at scrape time; `images` is null for text-only models,
  // `grammars` where structured output is unavailable.
  std::string Render(const engine::EngineStats& stats,
                     const std::map<std::string, TenantUsage>& tenants,
                     const ImageCacheStats* images = nullptr,
                     const structured::GrammarCacheStats* grammars = nullptr) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, int64_t> requests_;
  std::map<std::string, int64_t> finish_reasons_;
  int64_t prompt_tokens_ = 0, cached_tokens_ = 0, generation_tokens_ = 0;
  Histogram ttft_, tpot_, queue_, e2e_;
  int64_t images_encoded_ = 0, encode_batches_ = 0;
  Histogram encode_;
  int64_t audio_clips_encoded_ = 0;
  Histogram audio_encode_;
  std::map<std::pair<std::string, std::string>, int64_t> grammar_compiles_;  // (kind, outcome)
  Histogram grammar_compile_;
};

}  // namespace muse::server
