// DecodeImage against libpng / libjpeg-turbo references: every PNG layout exactly, JPEG equal to
// plain libjpeg (PIL's decoder) and deterministic, CMYK as PIL converts it, limits before
// decoding, truncation and the fuzz regression inputs. No libtorch.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "src/common/image_encode.h"
#include "src/vision/image.h"
#include "tests/common/status_matchers.h"
#include "tests/vision/test_codecs.h"

namespace muse::vision {
namespace {

using muse::EncodePng;
using muse::testing::EncodeJpegLib;
using muse::testing::EncodePngLib;
using muse::testing::PngSpec;
using muse::testing::ReferenceDecodeJpeg;

uint32_t Next(uint32_t& s) { return s = s * 1664525u + 1013904223u; }

// ---- PNG: every color type and depth, plain and interlaced, against PIL's convert("RGB") ----

struct PngCase {
  int color_type, bit_depth;
  bool trns;
};

TEST(PngDecodeTest, EveryLayoutRoundTripsExactly) {
  const PngCase cases[] = {
      {0, 1, false},  {0, 2, false}, {0, 4, false},  {0, 8, false}, {0, 16, false}, {4, 8, false},
      {4, 16, false}, {2, 8, false}, {2, 16, false}, {6, 8, false}, {6, 16, false}, {3, 1, false},
      {3, 2, false},  {3, 4, false}, {3, 8, false},  {3, 8, true},  {3, 4, true}};
  const int channels[] = {1, 0, 3, 1, 2, 0, 4};
  for (const PngCase& pc : cases) {
    for (bool interlaced : {false, true}) {
      for (auto [w, h] : {std::pair{13, 9}, std::pair{1, 1}, std::pair{3, 17}}) {
        SCOPED_TRACE(::testing::Message() << "color type " << pc.color_type << " depth "
                                          << pc.bit_depth << " interlaced " << interlaced
                                          << " trns " << pc.trns << " " << w << "x" << h);
        const int c = channels[pc.color_type];
        const uint32_t max = (1u << pc.bit_depth) - 1;
        uint32_t seed = 7 * pc.color_type + pc.bit_depth + w;
        PngSpec spec{
            .color_type = pc.color_type, .bit_depth = pc.bit_depth, .interlaced = interlaced};
        if (pc.color_type == 3) {
          for (uint32_t i = 0; i <= max; ++i) {
            for (int k = 0; k < 3; ++k) spec.palette.push_back(Next(seed) >> 24);
          }
          if (pc.trns) {
            for (uint32_t i = 0; i <= max / 2; ++i) spec.trns_alpha.push_back(Next(seed) >> 24);
          }
        }
        std::vector<uint16_t> samples(static_cast<size_t>(w) * h * c);
        for (auto& v : samples) v = static_cast<uint16_t>((Next(seed) >> 8) & max);
        auto im = DecodeImage(EncodePngLib(samples, w, h, spec));
        ASSERT_TRUE(im.ok()) << im.status();
        ASSERT_EQ(im->width, w);
        ASSERT_EQ(im->height, h);
        ASSERT_EQ(im->rgb.size(), static_cast<size_t>(w) * h * 3);
        for (int i = 0; i < w * h; ++i) {
          for (int k = 0; k < 3; ++k) {
            const uint16_t* s = &samples[static_cast<size_t>(i) * c];
            uint32_t want;
            if (pc.color_type == 3) {
              want = spec.palette[3 * s[0] + k];  // tRNS ignored
            } else {
              const uint32_t v = s[(pc.color_type & 2) ? k : 0];   // grey replicates; alpha dropped
              want = pc.bit_depth == 16 ? v >> 8 : v * 255 / max;  // 16-bit: high byte
            }
            ASSERT_EQ(im->rgb[static_cast<size_t>(i) * 3 + k], want)
                << "pixel " << i << " ch " << k;
          }
        }
      }
    }
  }
}

TEST(PngDecodeTest, CrcAndZlibErrorsUseLibpngMessages) {
  const std::vector<uint8_t> px(8 * 8 * 3, 100);
  std::string png = EncodePng(px, 8, 8, 3);
  std::string bad_crc = png;
  bad_crc[29] = static_cast<char>(bad_crc[29] ^ 1);  // IHDR CRC
  EXPECT_INVALID(DecodeImage(bad_crc), "invalid PNG header (IHDR: CRC error)");
  EXPECT_INVALID(DecodeImage(png.substr(0, png.size() - 20)), "corrupt or truncated PNG");
}

// ---- JPEG ----------------------------------------------------------------------------------

std::vector<uint8_t> Gradient(int w, int h, int c) {
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * c);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      for (int k = 0; k < c; ++k) {
        px[(static_cast<size_t>(y) * w + x) * c + k] =
            static_cast<uint8_t>(10 + x * 120 / w + y * 60 / h + 30 * k);  // no wrap: smooth
      }
    }
  }
  return px;
}

TEST(JpegDecodeTest, SmoothGradientKnownAnswerAtQuality100) {
  const int w = 37, h = 21;  // not multiples of the 16x16 MCU
  const auto px = Gradient(w, h, 3);
  auto im = DecodeImage(EncodeJpegLib(px, w, h, 3, 100));
  ASSERT_TRUE(im.ok()) << im.status();
  ASSERT_EQ(im->width, w);
  ASSERT_EQ(im->height, h);
  int max_diff = 0;
  for (size_t i = 0; i < px.size(); ++i)
    max_diff = std::max(max_diff, std::abs(int(im->rgb[i]) - int(px[i])));
  EXPECT_LE(max_diff, 4);  // 4:2:0 chroma + rounding on a smooth picture
}

TEST(JpegDecodeTest, EqualsPlainLibjpegAndIsDeterministic) {
  // Plain libjpeg with its defaults is what PIL runs, so equality here is PIL equality.
  const int w = 45, h = 29;
  uint32_t seed = 3;
  std::vector<uint8_t> noise(static_cast<size_t>(w) * h * 3);
  for (auto& v : noise) v = static_cast<uint8_t>(Next(seed) >> 24);
  for (int c : {1, 3}) {
    for (bool progressive : {false, true}) {
      for (int quality : {50, 95}) {
        SCOPED_TRACE(::testing::Message() << "components " << c << " progressive " << progressive
                                          << " quality " << quality);
        std::vector<uint8_t> px(noise.begin(), noise.begin() + static_cast<size_t>(w) * h * c);
        const std::string jpg = EncodeJpegLib(px, w, h, c, quality, progressive);
        auto a = DecodeImage(jpg);
        auto b = DecodeImage(jpg);
        ASSERT_TRUE(a.ok()) << a.status();
        ASSERT_TRUE(b.ok()) << b.status();
        EXPECT_EQ(a->rgb, b->rgb);
        EXPECT_EQ(a->rgb, ReferenceDecodeJpeg(jpg, 3));
      }
    }
  }
}

TEST(JpegDecodeTest, CmykConvertsAsPilAdobeInverted) {
  const int w = 16, h = 8;
  // Flat quadrants survive quality 100 exactly enough to pin the formula down.
  std::vector<uint8_t> cmyk(static_cast<size_t>(w) * h * 4);
  const uint8_t colors[4][4] = {
      {255, 255, 255, 255}, {0, 0, 0, 0}, {200, 100, 50, 128}, {10, 250, 130, 60}};
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      std::copy_n(colors[x / 4], 4, &cmyk[(static_cast<size_t>(y) * w + x) * 4]);
    }
  }
  const std::string jpg = EncodeJpegLib(cmyk, w, h, 4, 100);
  auto im = DecodeImage(jpg);
  ASSERT_TRUE(im.ok()) << im.status();
  const std::vector<uint8_t> raw = ReferenceDecodeJpeg(jpg, 4);
  for (int i = 0; i < w * h; ++i) {
    // Pillow: unpack "CMYK;I" (invert), then cmyk2rgb: nk = 255 - k; out = nk - nk * c / 255.
    const int c0 = 255 - raw[4 * i], m = 255 - raw[4 * i + 1], y = 255 - raw[4 * i + 2];
    const int nk = 255 - (255 - raw[4 * i + 3]);
    int tmp;
    auto muldiv255 = [&](int a, int b) {
      tmp = a * b + 128;
      return ((tmp >> 8) + tmp) >> 8;
    };
    const int want[3] = {nk - muldiv255(c0, nk), nk - muldiv255(m, nk), nk - muldiv255(y, nk)};
    for (int k = 0; k < 3; ++k) ASSERT_EQ(im->rgb[3 * i + k], std::clamp(want[k], 0, 255)) << i;
  }
  // Raw 255 everywhere is "no ink" under Adobe inversion: white; raw 0 is full ink: black.
  EXPECT_EQ(im->rgb[0], 255);
  EXPECT_EQ(im->rgb[3 * 4 + 1], 0);
}

TEST(JpegDecodeTest, UnsupportedColorSpaceIsNamed) {
  // Two components: libjpeg records JCS_UNKNOWN, which has no RGB meaning.
  const std::vector<uint8_t> px(8 * 8 * 2, 77);
  EXPECT_INVALID(DecodeImage(EncodeJpegLib(px, 8, 8, 2, 90)),
                 "unsupported JPEG color space (2 components");
}

TEST(JpegDecodeTest, LimitsAreCheckedFromTheHeader) {
  std::string jpg = EncodeJpegLib(Gradient(16, 16, 3), 16, 16, 3, 90);
  const size_t sof = jpg.find("\xff\xc0", 0, 2);
  ASSERT_NE(sof, std::string::npos);
  // SOF0: FFC0 len(2) precision(1) height(2) width(2)
  jpg[sof + 5] = static_cast<char>(60000 >> 8);
  jpg[sof + 6] = static_cast<char>(60000 & 255);
  jpg[sof + 7] = static_cast<char>(60000 >> 8);
  jpg[sof + 8] = static_cast<char>(60000 & 255);
  EXPECT_INVALID(DecodeImage(jpg), "60000x60000 = 3600000000 pixels exceeds the limit");
}

TEST(JpegDecodeTest, TruncationBeforeTheLastScanlineIsAnError) {
  const std::string jpg = EncodeJpegLib(Gradient(64, 64, 3), 64, 64, 3, 90);
  EXPECT_INVALID(DecodeImage(jpg.substr(0, jpg.size() * 2 / 3)),
                 "corrupt or truncated JPEG (Premature end of JPEG file)");
  // Missing only the EOI marker: libjpeg's Huffman decoder reads ahead into it, and PIL (without
  // LOAD_TRUNCATED_IMAGES) calls that truncated too.
  EXPECT_INVALID(DecodeImage(jpg.substr(0, jpg.size() - 2)), "Premature end of JPEG file");
  // Trailing bytes after EOI are ignored.
  auto im = DecodeImage(jpg + "trailing");
  ASSERT_TRUE(im.ok()) << im.status();
  EXPECT_EQ(im->rgb, DecodeImage(jpg)->rgb);
}

TEST(JpegDecodeTest, ProgressiveScanCountIsBounded) {
  // Repeating a progressive refinement scan is only a libjpeg warning, so a tiny file could make
  // the decoder sweep the coefficient buffer thousands of times; we stop after 500 scans.
  const std::string jpg = EncodeJpegLib(Gradient(32, 32, 3), 32, 32, 3, 90, /*progressive=*/true);
  const size_t last_sos = jpg.rfind("\xff\xda", std::string::npos, 2);
  const size_t eoi = jpg.rfind("\xff\xd9", std::string::npos, 2);
  ASSERT_LT(last_sos, eoi);
  std::string many = jpg.substr(0, eoi);
  for (int i = 0; i < 600; ++i) many += jpg.substr(last_sos, eoi - last_sos);
  many += "\xff\xd9";
  EXPECT_INVALID(DecodeImage(many), "more than 500 progressive scans");
}

TEST(DecodeTest, LibraryMessagesNeverReachStderr) {
  const std::string jpg = EncodeJpegLib(Gradient(32, 32, 3), 32, 32, 3, 90);
  std::string junk = jpg;
  junk.insert(jpg.rfind("\xff\xd9", std::string::npos, 2), "garbage");  // libjpeg warning
  const std::vector<uint8_t> px(4 * 4 * 3, 9);
  const std::string png = EncodePng(px, 4, 4, 3);
  ::testing::internal::CaptureStderr();
  (void)DecodeImage(junk);
  (void)DecodeImage(jpg.substr(0, 300));
  (void)DecodeImage(png.substr(0, 40));
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

// ---- Inputs found by vision_fuzzer (also part of its seed corpus) ------------------------------

TEST(FuzzRegressionTest, EveryRecordedInputIsRejectedOrWellFormed) {
  const std::filesystem::path dir =
      std::filesystem::path(MUSE_VISION_TEST_DIR) / "fuzz_regressions";
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    SCOPED_TRACE(entry.path().filename().string());
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto im = DecodeImage(bytes, {.max_bytes = 1 << 20, .max_pixels = 1 << 18});
    ++n;
    if (im.ok()) {
      EXPECT_EQ(im->rgb.size(), static_cast<size_t>(im->width) * im->height * 3);
    } else {
      EXPECT_EQ(im.status().code(), absl::StatusCode::kInvalidArgument) << im.status();
    }
  }
  EXPECT_GE(n, 3);
}

TEST(FuzzRegressionTest, IhdrDimensionProductDoesNotOverflow) {
  // 0xd7dce1e6 x 0xebda6a71: the pixel count overflowed int64 in the limit check (UBSan).
  std::ifstream in(std::string(MUSE_VISION_TEST_DIR) +
                       "/fuzz_regressions/png-ihdr-dimension-product-overflow.png",
                   std::ios::binary);
  ASSERT_TRUE(in);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_INVALID(DecodeImage(bytes), "3621577190x3956959857 = 14330435559856861830 pixels exceeds");
}

TEST(FuzzRegressionTest, StbHuffmanOverflowInputsAreRejectedByLibjpeg) {
  // stb_image 2.27 wrote past its Huffman size list on these; libjpeg validates the table.
  for (const char* file : {"jpeg-dht-overflow.jpg", "jpeg-dht-overflow-after-junk.jpg",
                           "jpeg-dht-overflow-open.jpg"}) {
    std::ifstream in(std::string(MUSE_VISION_TEST_DIR) + "/fuzz_regressions/" + file,
                     std::ios::binary);
    SCOPED_TRACE(file);
    ASSERT_TRUE(in);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_INVALID(DecodeImage(bytes), "JPEG");
  }
}

}  // namespace
}  // namespace muse::vision
