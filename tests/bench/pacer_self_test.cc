// Load-generator calibration: 2,000 concurrent streams against the in-process pacer server.
// Checks every stream and chunk arrived and prints the overhead figures; bounds are loose
// because CI machines are shared (the figures to quote come from `muse-bench --self-test`).
#include <gtest/gtest.h>

#include <iostream>

#include "benchmarks/bench/self_test.h"

namespace muse::bench {
namespace {

TEST(PacerSelfTest, TwoThousandConcurrentStreams) {
  SelfTestConfig c;
  c.streams = 2000;
  c.connections = 4;
  c.pacer.messages = 5;
  c.pacer.first_delay_s = 0.2;
  c.pacer.interval_s = 0.1;
  auto r = RunSelfTest(c);
  ASSERT_TRUE(r.ok()) << r.status();
  std::cout << FormatSelfTest(*r);
  EXPECT_EQ(r->completed, 2000);
  EXPECT_EQ(r->failed, 0);
  EXPECT_EQ(r->chunks, 2000 * 5);
  EXPECT_EQ(r->itl_ms.count, 2000u * 4);
  // Median delivery (server write -> client callback) well under one pacer interval.
  EXPECT_LT(r->delivery_ms.median, 100.0);
}

}  // namespace
}  // namespace muse::bench
