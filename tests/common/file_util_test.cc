#include "src/common/file_util.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

namespace muse {
namespace {

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/file_util_" + std::to_string(::getpid()) + "_" + name;
}

TEST(FileUtilTest, ReadsBinaryBytesExactly) {
  const std::string path = TempPath("bytes");
  const std::string bytes("a\0b\r\n\xff", 6);
  std::ofstream(path, std::ios::binary) << bytes;
  auto got = ReadFile(path);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, bytes);
  std::remove(path.c_str());
}

TEST(FileUtilTest, MissingFileIsNotFoundNamingThePath) {
  auto got = ReadFile("/nonexistent/dir/x.json");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(got.status().message().find("/nonexistent/dir/x.json: cannot open"), std::string::npos)
      << got.status();
}

TEST(FileUtilTest, ParsesJsonAndNamesThePathOnBadJson) {
  const std::string good = TempPath("good.json"), bad = TempPath("bad.json");
  std::ofstream(good) << R"({"a": [1, 2], "b": "x"})";
  std::ofstream(bad) << R"({"a": [1, 2,})";
  auto j = ParseJsonFile(good);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ((*j)["a"][1], 2);
  auto e = ParseJsonFile(bad);
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(e.status().message().find(bad + ": not valid JSON: "), std::string::npos) << e.status();
  std::remove(good.c_str());
  std::remove(bad.c_str());
}

}  // namespace
}  // namespace muse
