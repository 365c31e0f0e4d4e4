#include "src/server/metrics.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "src/structured/grammar_cache.h"

namespace muse::server {
namespace {

void Header(std::string* out, const std::string& name, const char* type, const std::string& help) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

void Gauge(std::string* out, const std::string& name, const std::string& help, double v) {
  Header(out, name, "gauge", help);
  absl::StrAppend(out, name, " ", absl::StrFormat("%.6g", v), "\n");
}

void Counter(std::string* out, const std::string& name, const std::string& help, int64_t v) {
  Header(out, name, "counter", help);
  absl::StrAppend(out, name, " ", v, "\n");
}

void Counter(std::string* out, const std::string& name, const std::string& help, double v) {
  Header(out, name, "counter", help);
  absl::StrAppend(out, name, " ", absl::StrFormat("%.9g", v), "\n");
}

// Label values: escape backslash, quote and newline.
std::string Esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '\\' || c == '"') o.push_back('\\');
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    o.push_back(c);
  }
  return o;
}

std::vector<double> LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
}

// Prometheus histogram from non-cumulative bucket counts (the last one is +Inf).
void RenderHistogram(std::string* out, const std::string& name, const std::string& help,
                     const double* bounds, size_t num_bounds, const int64_t* counts, double sum) {
  Header(out, name, "histogram", help);
  int64_t cum = 0;
  for (size_t i = 0; i < num_bounds; ++i) {
    cum += counts[i];
    absl::StrAppend(out, name, "_bucket{le=\"", absl::StrFormat("%g", bounds[i]), "\"} ", cum,
                    "\n");
  }
  cum += counts[num_bounds];
  absl::StrAppend(out, name, "_bucket{le=\"+Inf\"} ", cum, "\n", name, "_sum ",
                  absl::StrFormat("%.6f", sum), "\n", name, "_count ", cum, "\n");
}

}  // namespace

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
}

void Histogram::Render(const std::string& name, const std::string& help, std::string* out) const {
  RenderHistogram(out, name, help, bounds_.data(), bounds_.size(), counts_.data(), sum_);
}

Metrics::Metrics()
    : ttft_(LatencyBuckets()),
      tpot_(LatencyBuckets()),
      queue_(LatencyBuckets()),
      e2e_(LatencyBuckets()),
      encode_(LatencyBuckets()),
      audio_encode_(LatencyBuckets()),
      grammar_compile_({0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                        0.5, 1, 2.5, 5}) {}

void Metrics::RecordGrammarCompile(const std::string& kind, double seconds, bool ok) {
  std::lock_guard lock(mu_);
  ++grammar_compiles_[{kind, ok ? "ok" : "error"}];
  grammar_compile_.Observe(seconds);
}

void Metrics::RecordImageEncode(int64_t images, double seconds) {
  std::lock_guard lock(mu_);
  images_encoded_ += images;
  ++encode_batches_;
  encode_.Observe(seconds);
}

void Metrics::RecordAudioEncode(int64_t clips, double seconds) {
  std::lock_guard lock(mu_);
  audio_clips_encoded_ += clips;
  audio_encode_.Observe(seconds);
}

void Metrics::RecordRequest(const std::string& method, const std::string& code) {
  std::lock_guard lock(mu_);
  ++requests_[{method, code}];
}

void Metrics::RecordGeneration(const engine::Usage& usage, const engine::Timings& t,
                               const std::string& finish_reason) {
  std::lock_guard lock(mu_);
  prompt_tokens_ += usage.prompt_tokens;
  cached_tokens_ += usage.cached_tokens;
  generation_tokens_ += usage.completion_tokens;
  ++finish_reasons_[finish_reason];
  if (usage.completion_tokens > 0) {
    ttft_.Observe(absl::ToDoubleSeconds(t.ttft));
    queue_.Observe(absl::ToDoubleSeconds(t.queue));
    if (usage.completion_tokens > 1) tpot_.Observe(absl::ToDoubleSeconds(t.tpot));
  }
  e2e_.Observe(absl::ToDoubleSeconds(t.e2e));
}

std::string Metrics::Render(const engine::EngineStats& s,
                            const std::map<std::string, TenantUsage>& tenants,
                            const ImageCacheStats* images,
                            const structured::GrammarCacheStats* grammars) const {
  std::string out;
  {
    std::lock_guard lock(mu_);
    Header(&out, "muse_requests_total", "counter", "Finished RPCs by method and gRPC status code.");
    for (const auto& [key, n] : requests_) {
      absl::StrAppend(&out, "muse_requests_total{method=\"", key.first, "\",code=\"", key.second,
                      "\"} ", n, "\n");
    }
    Header(&out, "muse_generations_total", "counter", "Finished generations by finish reason.");
    for (const auto& [reason, n] : finish_reasons_) {
      absl::StrAppend(&out, "muse_generations_total{finish_reason=\"", reason, "\"} ", n, "\n");
    }
    Counter(&out, "muse_prompt_tokens_total", "Prompt tokens of finished generations.",
            prompt_tokens_);
    Counter(&out, "muse_cached_prompt_tokens_total", "Prompt tokens served by the prefix cache.",
            cached_tokens_);
    Counter(&out, "muse_generation_tokens_total", "Generated tokens.", generation_tokens_);
    ttft_.Render("muse_time_to_first_token_seconds", "Arrival to first token.", &out);
    tpot_.Render("muse_time_per_output_token_seconds",
                 "Mean time per output token after the first.", &out);
    queue_.Render("muse_queue_time_seconds", "Arrival to first scheduled.", &out);
    e2e_.Render("muse_e2e_request_latency_seconds", "Arrival to finish.", &out);
    if (images != nullptr) {
      Counter(&out, "muse_images_encoded_total", "Images run through the vision tower.",
              images_encoded_);
      Counter(&out, "muse_image_encode_batches_total", "EncodeBatch calls of the image encoder.",
              encode_batches_);
      encode_.Render("muse_image_encode_seconds", "Duration of one EncodeBatch call.", &out);
      Counter(&out, "muse_audio_clips_encoded_total", "Audio clips run through the audio tower.",
              audio_clips_encoded_);
      audio_encode_.Render("muse_audio_encode_seconds",
                           "Audio tower time of one encoder batch's clips.", &out);
    }
  }
  if (grammars != nullptr) {
    {
      std::lock_guard lock(mu_);
      Header(&out, "muse_grammar_compiles_total", "counter",
             "Structured-output constraints compiled, by kind and outcome (cache misses).");
      for (const auto& [key, n] : grammar_compiles_) {
        absl::StrAppend(&out, "muse_grammar_compiles_total{kind=\"", key.first, "\",outcome=\"",
                        key.second, "\"} ", n, "\n");
      }
      grammar_compile_.Render("muse_grammar_compile_seconds",
                              "Compile time of one constraint (front end + matcher tables).", &out);
    }
    Counter(&out, "muse_grammar_cache_hits_total",
            "Constraints answered by the compiled-grammar cache (or a compile in progress).",
            static_cast<int64_t>(grammars->hits));
    Counter(&out, "muse_grammar_cache_misses_total", "Constraints that had to be compiled.",
            static_cast<int64_t>(grammars->misses));
    Counter(&out, "muse_grammar_cache_evictions_total", "Compiled grammars dropped (LRU).",
            static_cast<int64_t>(grammars->evictions));
    Gauge(&out, "muse_grammar_cache_entries", "Compiled grammars (or cached errors) held.",
          static_cast<double>(grammars->entries));
    Gauge(&out, "muse_token_classes_shared",
          "Token-class tables every grammar of the vocabulary shares (sub-parses such as a JSON "
          "string, classified once per process; the start-up warm-up fills the common ones).",
          static_cast<double>(grammars->shared_token_classes));
  }
  // The engine's side of structured output (src/engine/token_masks.h): zero without constraints.
  Counter(&out, "muse_token_masks_total",
          "Token masks computed (one per constrained logits row of a step).", s.num_token_masks);
  Counter(&out, "muse_token_mask_compute_seconds_total",
          "Time computing token masks (per step, the mask worker's first job start to its last "
          "job end; overlaps the forward pass).",
          absl::ToDoubleSeconds(s.sum_token_mask_compute));
  Counter(&out, "muse_token_mask_wait_seconds_total",
          "Time the engine thread waited for token masks after the forward pass (the part the "
          "forward pass did not hide).",
          absl::ToDoubleSeconds(s.sum_token_mask_wait));
  if (images != nullptr) {
    Counter(&out, "muse_encoder_cache_hits_total",
            "Images and audio clips whose embeddings came from the encoder cache.",
            static_cast<int64_t>(images->hits));
    Counter(&out, "muse_encoder_cache_misses_total",
            "Images and audio clips not in the encoder cache.",
            static_cast<int64_t>(images->misses));
    Counter(&out, "muse_encoder_cache_evictions_total", "Encoder cache evictions.",
            static_cast<int64_t>(images->evictions));
    Gauge(&out, "muse_encoder_cache_bytes", "Bytes of embeddings held by the encoder cache.",
          images->bytes);
    Gauge(&out, "muse_encoder_cache_entries", "Images and audio clips held by the encoder cache.",
          images->entries);
  }
  Gauge(&out, "muse_num_requests_running", "Sequences running in the engine.", s.num_running_seqs);
  Gauge(&out, "muse_num_requests_waiting", "Sequences waiting (queued or preempted).",
        s.num_waiting_seqs);
  Gauge(&out, "muse_kv_cache_usage_ratio", "KV blocks referenced by sequences / total.",
        s.kv_usage);
  Gauge(&out, "muse_kv_blocks_total", "KV blocks in the pool.", s.kv_blocks_total);
  Gauge(&out, "muse_kv_blocks_used", "KV blocks referenced by sequences.", s.kv_blocks_used);
  Gauge(&out, "muse_kv_blocks_cached",
        "KV blocks in the prefix cache (referenced or evictable; evictable ones are not used).",
        s.kv_blocks_cached);
  Gauge(&out, "muse_prefix_cache_hit_rate",
        "Prompt tokens served from the prefix cache / looked up.",
        s.prefix_cache_query_tokens > 0
            ? static_cast<double>(s.prefix_cache_hit_tokens) / s.prefix_cache_query_tokens
            : 0.0);
  Counter(&out, "muse_num_preemptions_total", "Sequences preempted (recompute).",
          s.num_preemptions);
  Counter(&out, "muse_engine_steps_total", "Engine iterations.", s.num_steps);
  RenderHistogram(&out, "muse_engine_step_seconds",
                  "Duration of one engine step that ran a batch, schedule to last output pushed.",
                  engine::kStepSecondsBounds.data(), engine::kStepSecondsBounds.size(),
                  s.step_buckets.data(), absl::ToDoubleSeconds(s.sum_step));
  Counter(&out, "muse_engine_rejected_total", "Requests the engine rejected at AddRequest.",
          s.requests_rejected);
  Header(&out, "muse_tenant_requests_total", "counter", "Admitted requests per tenant.");
  for (const auto& [t, u] : tenants)
    absl::StrAppend(&out, "muse_tenant_requests_total{tenant=\"", Esc(t), "\"} ", u.requests, "\n");
  Header(&out, "muse_tenant_rejected_total", "counter", "Requests over the tenant's rate limit.");
  for (const auto& [t, u] : tenants)
    absl::StrAppend(&out, "muse_tenant_rejected_total{tenant=\"", Esc(t), "\"} ", u.rejected, "\n");
  Header(&out, "muse_tenant_prompt_tokens_total", "counter", "Prompt tokens per tenant.");
  for (const auto& [t, u] : tenants) {
    absl::StrAppend(&out, "muse_tenant_prompt_tokens_total{tenant=\"", Esc(t), "\"} ",
                    u.prompt_tokens, "\n");
  }
  Header(&out, "muse_tenant_completion_tokens_total", "counter", "Completion tokens per tenant.");
  for (const auto& [t, u] : tenants) {
    absl::StrAppend(&out, "muse_tenant_completion_tokens_total{tenant=\"", Esc(t), "\"} ",
                    u.completion_tokens, "\n");
  }
  return out;
}

}  // namespace muse::server
