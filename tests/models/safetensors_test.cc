#include "models/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

#include "tests/models/temp_dir.h"

namespace muse::models {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// Raw file bytes: u64 little-endian header length, header, data.
std::string RawFile(const std::string& header, const std::string& data, uint64_t len) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(len >> (8 * i));
  return out + header + data;
}
std::string RawFile(const std::string& header, const std::string& data) {
  return RawFile(header, data, header.size());
}

class SafetensorsTest : public ::testing::Test {
 protected:
  // Writes `bytes` to a file and returns the error message of opening it.
  std::string OpenError(const std::string& bytes) {
    path_ = dir_ / "bad.safetensors";
    testing::WriteFile(path_, bytes);
    auto f = SafetensorsFile::Open(path_);
    EXPECT_FALSE(f.ok()) << "opened a malformed file";
    if (f.ok()) return "";
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << f.status();
    EXPECT_THAT(f.status().message(), HasSubstr(path_));
    return std::string(f.status().message());
  }
  testing::TempDir dir_;
  std::string path_;
};

std::vector<uint8_t> Pattern(size_t n, uint8_t salt) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 31 + salt);
  return v;
}

TEST_F(SafetensorsTest, RoundTripAllDtypes) {
  std::vector<TensorToWrite> tensors = {
      {"a.f32", DType::kFloat32, {3, 5}, Pattern(60, 1)},
      {"b.f16", DType::kFloat16, {7}, Pattern(14, 2)},
      {"c.bf16", DType::kBFloat16, {2, 3, 1}, Pattern(12, 3)},
      {"d.i64", DType::kInt64, {3}, Pattern(24, 4)},
      {"e.i32", DType::kInt32, {1, 1}, Pattern(4, 5)},
      {"f.u8", DType::kUInt8, {13}, Pattern(13, 6)},
      {"g.empty", DType::kFloat32, {0, 4}, {}},
      {"h.scalar", DType::kFloat32, {}, Pattern(4, 7)},
  };
  const std::string path = dir_ / "rt.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, tensors, {{"format", "pt"}}).ok());

  // Header padded to 8 bytes with spaces, as HF writes it.
  const std::string raw = testing::ReadFile(path);
  uint64_t len = 0;
  std::memcpy(&len, raw.data(), 8);
  EXPECT_EQ(len % 8, 0u);
  EXPECT_EQ(raw[8], '{');

  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->path(), path);
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
  ASSERT_EQ((*f)->tensors().size(), tensors.size());
  for (const TensorToWrite& t : tensors) {
    const TensorView& v = (*f)->tensors().at(t.name);
    EXPECT_EQ(v.name, t.name);
    EXPECT_EQ(v.dtype, t.dtype);
    EXPECT_EQ(v.shape, t.shape);
    EXPECT_EQ(v.nbytes, t.bytes.size());
    EXPECT_EQ(static_cast<size_t>(v.numel()) * kernels::dtype_size(v.dtype), v.nbytes);
    // memcmp with a null pointer is undefined even for 0 bytes (an empty vector's data() may be
    // null; UBSan in scripts/sanitizers.sh reports it).
    if (!t.bytes.empty()) {
      EXPECT_EQ(std::memcmp(v.data, t.bytes.data(), t.bytes.size()), 0) << t.name;
    }
  }
}

TEST_F(SafetensorsTest, DTypeNamesAndSizes) {
  EXPECT_STREQ(DTypeName(DType::kBFloat16), "BF16");
  EXPECT_STREQ(DTypeName(DType::kUInt8), "U8");
  EXPECT_EQ(kernels::dtype_size(DType::kInt64), 8u);
  EXPECT_EQ(kernels::dtype_size(DType::kFloat16), 2u);
}

TEST_F(SafetensorsTest, WriteRejectsWrongByteCount) {
  auto st = WriteSafetensors(dir_ / "x.safetensors", {{"t", DType::kFloat32, {2}, Pattern(7, 0)}});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), AllOf(HasSubstr("'t'"), HasSubstr("7 bytes"), HasSubstr("8 bytes")));
}

TEST_F(SafetensorsTest, StreamedWriterChecksProducerByteCount) {
  auto produce = [](size_t, const ByteSink& sink) {
    const uint8_t b[3] = {1, 2, 3};
    return sink(b, 3);
  };
  auto st =
      WriteSafetensorsStreamed(dir_ / "x.safetensors", {{"t", DType::kFloat32, {1}}}, produce);
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("wrote 3 of the 4 bytes of tensor 't'"));
  // A failed write leaves neither the target nor the temp file behind.
  EXPECT_FALSE(std::filesystem::exists(dir_ / "x.safetensors"));
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir_.path())) ++files;
  EXPECT_EQ(files, 0u);
}

TEST_F(SafetensorsTest, MissingFileIsNotFound) {
  auto f = SafetensorsFile::Open(dir_ / "nope.safetensors");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(f.status().message(), HasSubstr("nope.safetensors"));
}

TEST_F(SafetensorsTest, FileShorterThanLength) {
  EXPECT_THAT(OpenError("abcde"),
              HasSubstr("file is 5 bytes, shorter than the 8-byte header length"));
  EXPECT_THAT(OpenError(""), HasSubstr("file is 0 bytes"));
}

TEST_F(SafetensorsTest, HeaderLengthPastEnd) {
  EXPECT_THAT(OpenError(RawFile("{}", "", 1000)),
              HasSubstr("header length 1000 runs past the end of the file (10 bytes)"));
}

TEST_F(SafetensorsTest, AbsurdHeaderLength) {
  EXPECT_THAT(OpenError(RawFile("{}", "", uint64_t{1} << 62)),
              HasSubstr("header length 4611686018427387904 exceeds the limit"));
}

TEST_F(SafetensorsTest, InvalidJson) {
  EXPECT_THAT(OpenError(RawFile("{\"a\": ", "")), HasSubstr("header is not valid JSON"));
  EXPECT_THAT(OpenError(RawFile("", "")), HasSubstr("header is not valid JSON"));
}

TEST_F(SafetensorsTest, HeaderNotObject) {
  EXPECT_THAT(OpenError(RawFile("[1, 2]", "")),
              HasSubstr("header must be a JSON object, got array"));
}

TEST_F(SafetensorsTest, DuplicateTensorName) {
  const std::string t = R"("w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]})";
  EXPECT_THAT(OpenError(RawFile("{" + t + ", " + t + "}", "x")),
              HasSubstr("header repeats key 'w'"));
}

TEST_F(SafetensorsTest, TensorEntryNotObject) {
  EXPECT_THAT(OpenError(RawFile(R"({"w": 5})", "")),
              HasSubstr("tensor 'w': entry must be an object"));
}

TEST_F(SafetensorsTest, BadMetadata) {
  EXPECT_THAT(OpenError(RawFile(R"({"__metadata__": {"format": 1}})", "")),
              HasSubstr("__metadata__ value for 'format' must be a string"));
}

TEST_F(SafetensorsTest, UnknownDtype) {
  EXPECT_THAT(OpenError(RawFile(R"({"w": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}})",
                                std::string(8, '\0'))),
              HasSubstr("tensor 'w': unknown dtype 'F64'"));
  EXPECT_THAT(OpenError(RawFile(R"({"w": {"shape": [1], "data_offsets": [0, 8]}})", "")),
              HasSubstr("tensor 'w': missing string field 'dtype'"));
}

TEST_F(SafetensorsTest, BadShape) {
  for (const char* shape : {"[2, -1]", "[2.0]", "\"2\"", "[[2]]", "null"}) {
    const std::string header =
        std::string(R"({"w": {"dtype": "U8", "shape": )") + shape + R"(, "data_offsets": [0, 2]}})";
    EXPECT_THAT(OpenError(RawFile(header, "ab")),
                HasSubstr("tensor 'w': shape must be a list of non-negative integers"))
        << shape;
  }
}

TEST_F(SafetensorsTest, NumelOverflow) {
  const std::string header =
      R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 4]}})";
  EXPECT_THAT(OpenError(RawFile(header, "abcd")),
              HasSubstr("tensor 'w': shape [4294967296, 4294967296] overflows the element count"));
  // Fits as an element count, overflows once multiplied by the dtype size.
  const std::string header2 =
      R"({"w": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 4]}})";
  EXPECT_THAT(OpenError(RawFile(header2, "abcd")), HasSubstr("overflows the element count"));
  // Zero elements, but the dims before the 0 overflow int64 (found by safetensors_fuzzer: numel()
  // multiplied them in order, signed overflow).
  const std::string header3 =
      R"({"w": {"dtype": "U8", "shape": [4611686018427387904, 3, 0], "data_offsets": [0, 0]}})";
  EXPECT_THAT(OpenError(RawFile(header3, "")),
              HasSubstr("shape [4611686018427387904, 3, 0] overflows the element count"));
}

TEST_F(SafetensorsTest, MalformedDataOffsets) {
  for (const char* offsets : {"[0]", "[0, 1, 2]", "[-1, 1]", "[0, 1.0]", "\"0,1\"", "{}"}) {
    const std::string header =
        std::string(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": )") + offsets + "}}";
    EXPECT_THAT(OpenError(RawFile(header, "a")),
                HasSubstr("tensor 'w': data_offsets must be [begin, end]"))
        << offsets;
  }
  EXPECT_THAT(OpenError(RawFile(R"({"w": {"dtype": "U8", "shape": [1]}})", "a")),
              HasSubstr("tensor 'w': data_offsets must be [begin, end]"));
}

TEST_F(SafetensorsTest, OffsetsBeginAfterEnd) {
  EXPECT_THAT(
      OpenError(RawFile(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [3, 2]}})", "abcd")),
      HasSubstr("tensor 'w': data_offsets begin 3 > end 2"));
}

TEST_F(SafetensorsTest, OffsetsPastDataBuffer) {
  EXPECT_THAT(
      OpenError(RawFile(R"({"w": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}})", "abcd")),
      HasSubstr("tensor 'w': data_offsets end 6 is past the data buffer (4 bytes)"));
}

TEST_F(SafetensorsTest, ByteCountDisagreesWithShape) {
  EXPECT_THAT(
      OpenError(
          RawFile(R"({"w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 4]}})", "abcdef")),
      HasSubstr("tensor 'w': data_offsets cover 4 bytes but shape [3] of BF16 needs 6 bytes"));
}

TEST_F(SafetensorsTest, OverlappingTensors) {
  const std::string header = R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},)"
                             R"( "e": {"dtype": "U8", "shape": [0], "data_offsets": [2, 2]},)"
                             R"( "b": {"dtype": "U8", "shape": [2], "data_offsets": [6, 8]},)"
                             R"( "c": {"dtype": "U8", "shape": [4], "data_offsets": [3, 7]}})";
  EXPECT_THAT(OpenError(RawFile(header, "abcdefgh")),
              HasSubstr("tensors 'a' [0, 4) and 'c' [3, 7) overlap"));
}

TEST_F(SafetensorsTest, EmptyTensorsAndGapsAreAllowed) {
  // An empty tensor inside another's range owns no bytes.
  const std::string header = R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},)"
                             R"( "e": {"dtype": "F32", "shape": [2, 0], "data_offsets": [2, 2]},)"
                             R"( "b": {"dtype": "U8", "shape": [2], "data_offsets": [6, 8]}})";
  testing::WriteFile(dir_ / "ok.safetensors", RawFile(header, "abcdefgh"));
  auto f = SafetensorsFile::Open(dir_ / "ok.safetensors");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->tensors().at("e").nbytes, 0u);
  EXPECT_EQ((*f)->tensors().at("e").numel(), 0);
  EXPECT_EQ(std::string(static_cast<const char*>((*f)->tensors().at("b").data), 2), "gh");
}

}  // namespace
}  // namespace muse::models
