// Metric math on hand-built timelines; expected values computed by hand (and with numpy's
// default percentile) in the comments.
#include "benchmarks/bench/metrics.h"

#include <gtest/gtest.h>

namespace muse::bench {
namespace {

RequestRecord Ok(double start, std::vector<double> chunks, std::vector<int32_t> tokens,
                 int64_t prompt, int64_t output, double end) {
  RequestRecord r;
  r.start_s = start;
  r.chunk_s = chunks;
  r.chunk_tokens = tokens;
  r.ttft_s = chunks[0] - start;
  for (size_t i = 1; i < chunks.size(); ++i) r.itl_s.push_back(chunks[i] - chunks[i - 1]);
  r.e2e_s = chunks.back() - start;
  r.end_s = end;
  r.prompt_tokens = prompt;
  r.output_tokens = output;
  return r;
}

RequestRecord Failed(double start, double end, int code) {
  RequestRecord r;
  r.start_s = start;
  r.end_s = end;
  r.status_code = code;
  r.prompt_tokens = 100;  // must not count
  return r;
}

// R0: ttft 0.5, itl [0.2, 0.3], e2e 1.0, 3 tokens -> tpot 0.25
// R1: ttft 0.2, itl [0.4], e2e 0.6, 5 tokens (usage; 1 + 4 streamed) -> tpot 0.1
// R2: ttft 1.0, e2e 1.0, 1 token -> no tpot (0 for goodput)
// R3 UNAVAILABLE, R4 DEADLINE_EXCEEDED. Duration 10 s.
std::vector<RequestRecord> Timeline() {
  return {Ok(0.0, {0.5, 0.7, 1.0}, {1, 1, 1}, 10, 3, 1.0), Ok(1.0, {1.2, 1.6}, {1, 4}, 20, 5, 1.6),
          Ok(2.0, {3.0}, {1}, 30, 1, 3.0), Failed(0.1, 0.2, 14), Failed(0.15, 5.0, 4)};
}

TEST(Percentile, MatchesNumpyLinear) {
  EXPECT_DOUBLE_EQ(Percentile({1, 2, 3, 4}, 90), 3.7);         // np.percentile([1,2,3,4], 90)
  EXPECT_DOUBLE_EQ(Percentile({15, 20, 35, 40, 50}, 40), 29);  // (n-1)q = 1.6
  EXPECT_DOUBLE_EQ(Percentile({7}, 99), 7);
  EXPECT_DOUBLE_EQ(Percentile({1, 3}, 50), 2);
  EXPECT_DOUBLE_EQ(Percentile({1, 2, 3, 4, 5}, 100), 5);
  EXPECT_DOUBLE_EQ(Percentile({1, 2, 3, 4, 5}, 0), 1);
}

TEST(Describe, EmptyIsZeros) {
  Distribution d = Describe({});
  EXPECT_EQ(d.count, 0u);
  EXPECT_EQ(d.mean, 0);
  EXPECT_EQ(d.p99, 0);
}

TEST(Summarize, HandComputedTimeline) {
  Summary s = Summarize(Timeline(), 10.0, Slo{});
  EXPECT_EQ(s.completed, 3);
  EXPECT_EQ(s.failed, 2);
  EXPECT_EQ(s.errors.at("UNAVAILABLE"), 1);
  EXPECT_EQ(s.errors.at("DEADLINE_EXCEEDED"), 1);
  EXPECT_EQ(s.total_input_tokens, 60);
  EXPECT_EQ(s.total_output_tokens, 9);
  EXPECT_DOUBLE_EQ(s.request_throughput, 0.3);
  EXPECT_DOUBLE_EQ(s.input_throughput, 6.0);
  EXPECT_DOUBLE_EQ(s.output_throughput, 0.9);
  EXPECT_DOUBLE_EQ(s.total_token_throughput, 6.9);
  EXPECT_FALSE(s.request_goodput.has_value());

  // TTFT ms [500, 200, 1000] -> sorted [200, 500, 1000]
  EXPECT_NEAR(s.ttft_ms.mean, 1700.0 / 3, 1e-9);
  EXPECT_NEAR(s.ttft_ms.median, 500, 1e-9);
  EXPECT_NEAR(s.ttft_ms.p90, 900, 1e-9);  // 500 + 0.8 * 500
  EXPECT_NEAR(s.ttft_ms.p99, 990, 1e-9);  // 500 + 0.98 * 500
  EXPECT_NEAR(s.ttft_ms.max, 1000, 1e-9);
  EXPECT_NEAR(s.ttft_ms.std, 329.98316455372216, 1e-6);  // np.std([500, 200, 1000])
  // TPOT ms [250, 100]; the one-token request is left out.
  EXPECT_EQ(s.tpot_ms.count, 2u);
  EXPECT_NEAR(s.tpot_ms.mean, 175, 1e-9);
  EXPECT_NEAR(s.tpot_ms.median, 175, 1e-9);
  EXPECT_NEAR(s.tpot_ms.p90, 235, 1e-9);
  EXPECT_NEAR(s.tpot_ms.p99, 248.5, 1e-9);
  // ITL ms pooled over requests [200, 300, 400]
  EXPECT_EQ(s.itl_ms.count, 3u);
  EXPECT_NEAR(s.itl_ms.mean, 300, 1e-9);
  EXPECT_NEAR(s.itl_ms.p90, 380, 1e-9);
  EXPECT_NEAR(s.itl_ms.p99, 398, 1e-9);
  // E2E ms [1000, 600, 1000]
  EXPECT_NEAR(s.e2el_ms.mean, 2600.0 / 3, 1e-9);
  EXPECT_NEAR(s.e2el_ms.median, 1000, 1e-9);
  EXPECT_NEAR(s.e2el_ms.max, 1000, 1e-9);
  // Output tokens per 1 s bin: [2, 6, 0, 1]; in flight peaks at 3 (R0, R3, R4 at t = 0.15).
  EXPECT_DOUBLE_EQ(s.peak_output_throughput, 6);
  EXPECT_EQ(s.peak_concurrency, 3);
}

TEST(Summarize, GoodputFollowsVllm) {
  auto slo = ParseSlo("ttft:600,tpot:200");
  ASSERT_TRUE(slo.ok());
  Summary s = Summarize(Timeline(), 10.0, *slo);
  // R0 fails TPOT (250 > 200), R2 fails TTFT (1000 > 600), R1 is good.
  EXPECT_EQ(s.good_completed, 1);
  EXPECT_DOUBLE_EQ(*s.request_goodput, 0.1);

  // A one-token request's TPOT counts as 0 for goodput.
  s = Summarize(Timeline(), 10.0, *ParseSlo("tpot:0"));
  EXPECT_EQ(s.good_completed, 1);
  // SLOs are inclusive (value <= SLO).
  s = Summarize(Timeline(), 10.0, *ParseSlo("e2el:1000"));
  EXPECT_EQ(s.good_completed, 3);
  EXPECT_DOUBLE_EQ(*s.request_goodput, 0.3);
  // vLLM's space-separated form.
  s = Summarize(Timeline(), 10.0, *ParseSlo("ttft:600 tpot:200"));
  EXPECT_EQ(s.good_completed, 1);
}

TEST(ParseSlo, RejectsBadInput) {
  EXPECT_FALSE(ParseSlo("ttft").ok());
  EXPECT_FALSE(ParseSlo("itl:5").ok());
  EXPECT_FALSE(ParseSlo("ttft:-1").ok());
  EXPECT_TRUE(ParseSlo("").ok());
  EXPECT_TRUE(ParseSlo("").value().empty());
}

TEST(OutputThroughputOverTime, Bins) {
  auto bins = OutputThroughputOverTime(Timeline(), 0.5);
  // chunks: 0.5(1) 0.7(1) 1.0(1) 1.2(1) 1.6(4) 3.0(1) -> 0.5 s bins [0, 2, 2, 4, 0, 0, 1] / 0.5
  ASSERT_EQ(bins.size(), 7u);
  EXPECT_DOUBLE_EQ(bins[0].second, 0);
  EXPECT_DOUBLE_EQ(bins[1].second, 4);
  EXPECT_DOUBLE_EQ(bins[2].second, 4);
  EXPECT_DOUBLE_EQ(bins[3].second, 8);
  EXPECT_DOUBLE_EQ(bins[6].first, 3.0);
  EXPECT_DOUBLE_EQ(bins[6].second, 2);
}

}  // namespace
}  // namespace muse::bench
