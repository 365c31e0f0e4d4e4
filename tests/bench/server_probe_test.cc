// The soak harness's probes of a server: log scan, metric parsing, RSS, pid of a listening port.
#include "benchmarks/bench/server_probe.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace muse::bench {
namespace {

TEST(ServerProbeTest, LogScanFindsErrorLevelAndSanitizerLinesMinusExpected) {
  const std::string path = ::testing::TempDir() + "/server_probe_test.log";
  std::ofstream(path) << "2026-12-06T20:07:26.676 I serving muse-tiny\n"
                         "2026-12-06T20:07:26.677 E engine step failed: boom\n"
                         "2026-12-06T20:07:26.678 W slow\n"
                         "2026-12-06T20:07:26.679 C fatal thing\n"
                         "E1206 12:00:00.000000 123 chttp2.cc:1] grpc error\n"
                         "==1==ERROR: AddressSanitizer: heap-use-after-free on address 0x1\n"
                         "x.cc:3:4: runtime error: signed integer overflow\n"
                         "2026-12-06T20:07:26.680 E expected: tenant over limit\n"
                         "Error handling is fine in text\n";
  auto scan = ScanLogErrors(path, 0, {"tenant over limit"});
  ASSERT_TRUE(scan.ok()) << scan.status();
  EXPECT_EQ(scan->lines, 9);
  EXPECT_EQ(scan->expected_errors, 1);
  EXPECT_EQ(scan->unexpected_count, 5);
  ASSERT_EQ(scan->unexpected.size(), 5u);
  EXPECT_NE(scan->unexpected[0].find("boom"), std::string::npos);
  EXPECT_NE(scan->unexpected[3].find("AddressSanitizer"), std::string::npos);
  EXPECT_FALSE(ScanLogErrors(path + ".missing", 0, {}).ok());
}

TEST(ServerProbeTest, RequestCodesSumsMethodsByCode) {
  PromSamples s = {
      {"muse_requests_total{method=\"Generate\",code=\"OK\"}", 5},
      {"muse_requests_total{method=\"Generate\",code=\"CANCELLED\"}", 2},
      {"muse_requests_total{method=\"GenerateUnary\",code=\"OK\"}", 3},
      {"muse_requests_total{method=\"Tokenize\",code=\"OK\"}", 100},
      {"muse_kv_blocks_used", 0},
  };
  const auto codes = RequestCodes(s, {"Generate", "GenerateUnary"});
  EXPECT_EQ(codes.size(), 2u);
  EXPECT_EQ(codes.at("OK"), 8);
  EXPECT_EQ(codes.at("CANCELLED"), 2);
  EXPECT_EQ(SampleOr(s, "muse_kv_blocks_used", -1), 0);
  EXPECT_EQ(SampleOr(s, "muse_nothing", -1), -1);
}

TEST(ServerProbeTest, RssAndTheProcessListeningOnAPort) {
  auto rss = ProcessRssBytes(::getpid());
  ASSERT_TRUE(rss.ok()) << rss.status();
  EXPECT_GT(*rss, 1 << 20);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const int port = ntohs(a.sin_port);
  EXPECT_FALSE(PidListeningOn(port).ok());  // bound, not listening
  ASSERT_EQ(::listen(fd, 1), 0);
  auto pid = PidListeningOn(port);
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_EQ(*pid, ::getpid());
  ::close(fd);
}

}  // namespace
}  // namespace muse::bench
