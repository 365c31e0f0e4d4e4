// muse_vision: decoding and its errors, base64/data URIs, preprocessing against references written
// here, digests, the encoder cache and placeholder expansion. No libtorch.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <thread>

#include "src/common/image_encode.h"
#include "src/vision/encoder_cache.h"
#include "src/vision/image.h"
#include "src/vision/image_input.h"
#include "src/vision/preprocess.h"
#include "tests/common/status_matchers.h"
#include "tests/vision/test_embeddings.h"
#include "tests/vision/test_images.h"

namespace muse::vision {
namespace {

using muse::EncodeJpeg;
using muse::EncodePng;
using muse::testing::Base64Encode;
using muse::testing::TestPixels;
using ::testing::HasSubstr;

Image MakeImage(int w, int h, uint32_t seed) {
  Image im;
  im.width = w;
  im.height = h;
  im.rgb = TestPixels(w, h, 3, seed);
  return im;
}

// ---- Decoding --------------------------------------------------------------------------------

TEST(DecodeTest, PngRoundTripsEveryChannelLayoutToRgb) {
  const int w = 13, h = 7;
  for (int c : {1, 2, 3, 4}) {
    const auto px = TestPixels(w, h, c, 11 + c);
    auto im = DecodeImage(EncodePng(px, w, h, c));
    ASSERT_TRUE(im.ok()) << im.status();
    ASSERT_EQ(im->width, w);
    ASSERT_EQ(im->height, h);
    for (int i = 0; i < w * h; ++i) {
      for (int k = 0; k < 3; ++k) {
        // grey (+alpha) replicates the grey value; RGBA drops alpha, like PIL convert("RGB").
        const uint8_t want = c <= 2 ? px[i * c] : px[i * c + k];
        ASSERT_EQ(im->rgb[i * 3 + k], want) << "channels " << c << " pixel " << i;
      }
    }
  }
}

// muse::EncodePng's zlib level: every level decodes to the same pixels; stored (0) is at least
// as large as the pixels (what size-limit tests rely on); a smooth picture compresses at 9.
TEST(DecodeTest, EncodePngLevelsRoundTrip) {
  const int w = 300, h = 90;  // more than one 64 KiB stored deflate block
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * 3);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i / 3) % w + (i % 3) * 40);
  size_t stored = 0, best = 0;
  for (int level : {muse::kPngStored, 1, muse::kPngDefaultLevel, 9}) {
    const std::string png = EncodePng(px, w, h, 3, level);
    auto im = DecodeImage(png);
    ASSERT_TRUE(im.ok()) << "level " << level << ": " << im.status();
    EXPECT_EQ(im->rgb, px) << "level " << level;
    (level == 0 ? stored : best) = png.size();
  }
  EXPECT_GT(stored, px.size());
  EXPECT_LT(best * 10, px.size());
  // Zero width gives a PNG whose header says so (for decoder rejection tests).
  EXPECT_INVALID(DecodeImage(EncodePng({}, 0, 4, 3)), "zero");
}

TEST(DecodeTest, JpegDecodesCloseToSource) {
  const int w = 40, h = 24;
  const auto px = TestPixels(w, h, 3, 5);
  auto im = DecodeImage(EncodeJpeg(px, w, h, 3, 95));
  ASSERT_TRUE(im.ok()) << im.status();
  ASSERT_EQ(im->width, w);
  ASSERT_EQ(im->height, h);
  double err = 0;
  for (size_t i = 0; i < px.size(); ++i) err += std::abs(int(im->rgb[i]) - int(px[i]));
  EXPECT_LT(err / px.size(), 20.0);  // lossy, but the same picture
  auto grey = DecodeImage(EncodeJpeg(TestPixels(w, h, 1, 6), w, h, 1));
  ASSERT_TRUE(grey.ok()) << grey.status();
  EXPECT_EQ(grey->rgb[0], grey->rgb[1]);
}

TEST(DecodeTest, RejectsEmptyUnknownAndOversized) {
  EXPECT_INVALID(DecodeImage(""), "empty image data");
  EXPECT_INVALID(DecodeImage("GIF89a......"), "unsupported or unrecognised format");
  const std::string png = EncodePng(TestPixels(64, 32, 3, 1), 64, 32, 3);
  EXPECT_INVALID(DecodeImage(png, {.max_bytes = 100, .max_pixels = 1 << 20}),
                 "exceeds the limit of 100 bytes");
  EXPECT_INVALID(DecodeImage(png, {.max_bytes = 1 << 20, .max_pixels = 2047}),
                 "64x32 = 2048 pixels exceeds the limit of 2047 pixels");
  EXPECT_TRUE(DecodeImage(png, {.max_bytes = 1 << 20, .max_pixels = 2048}).ok());
  const std::string jpg = EncodeJpeg(TestPixels(64, 32, 3, 1), 64, 32, 3);
  EXPECT_INVALID(DecodeImage(jpg, {.max_bytes = 1 << 20, .max_pixels = 100}), "exceeds the limit");
}

TEST(DecodeTest, HugeHeaderIsRejectedBeforeDecoding) {
  // A PNG whose IHDR claims 60000 x 60000 but has no pixel data: only the header is read.
  std::string png = EncodePng(TestPixels(2, 2, 3, 1), 2, 2, 3);
  auto put32 = [&](size_t off, uint32_t v) {
    for (int i = 0; i < 4; ++i) png[off + i] = static_cast<char>(v >> (24 - 8 * i));
  };
  put32(16, 10000);
  put32(20, 10000);
  EXPECT_INVALID(DecodeImage(png), "10000x10000 = 100000000 pixels exceeds the limit of 16777216");
  put32(16, 60000);  // the IHDR CRC is now wrong too: the limit is still what is reported
  put32(20, 60000);
  EXPECT_INVALID(DecodeImage(png), "60000x60000 = 3600000000 pixels exceeds the limit");
}

TEST(DecodeTest, RejectsZeroSizedPng) {
  std::string png = EncodePng(TestPixels(2, 2, 3, 1), 2, 2, 3);
  png[16] = png[17] = png[18] = png[19] = 0;  // IHDR width = 0
  auto st = DecodeImage(png).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()),
              ::testing::AnyOf(HasSubstr("zero-sized"), HasSubstr("invalid PNG header")));
}

TEST(DecodeTest, EveryTruncationOfPngAndJpegIsAnErrorNotACrash) {
  const std::string png = EncodePng(TestPixels(17, 9, 3, 2), 17, 9, 3);
  const std::string jpg = EncodeJpeg(TestPixels(17, 9, 3, 2), 17, 9, 3);
  for (const std::string* enc : {&png, &jpg}) {
    for (size_t n = 1; n < enc->size(); ++n) {
      // Copy into an exactly sized buffer so any over-read is caught by ASan builds.
      std::vector<char> buf(enc->begin(), enc->begin() + n);
      auto im = DecodeImage(std::string_view(buf.data(), buf.size()));
      if (im.ok()) {
        // Any success must still be a well-formed image.
        EXPECT_EQ(im->rgb.size(), size_t{17} * 9 * 3);
        continue;
      }
      EXPECT_EQ(im.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
  EXPECT_INVALID(DecodeImage(png.substr(0, 30)), "PNG");
  EXPECT_INVALID(DecodeImage(png.substr(0, png.size() / 2)), "corrupt or truncated PNG");
  EXPECT_INVALID(DecodeImage(jpg.substr(0, 10)), "invalid JPEG header");
}

TEST(DecodeTest, CorruptPngDataIsAnError) {
  std::string png = EncodePng(TestPixels(32, 32, 3, 3), 32, 32, 3);
  const size_t idat = png.find("IDAT");
  ASSERT_NE(idat, std::string::npos);
  png[idat + 4] = static_cast<char>(0xff);  // zlib header
  png[idat + 5] = static_cast<char>(0xff);
  EXPECT_INVALID(DecodeImage(png), "corrupt or truncated PNG");
}

// ---- base64 and data URIs --------------------------------------------------------------------

TEST(Base64Test, RoundTripsAndReportsErrors) {
  for (const std::string& s :
       std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)}) {
    auto d = Base64Decode(Base64Encode(s));
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(*d, s);
  }
  EXPECT_EQ(*Base64Decode("YWI"), "ab");  // padding optional
  EXPECT_INVALID(Base64Decode("YW*j"), "invalid character '*' at offset 2");
  EXPECT_INVALID(Base64Decode("YWJjZ"), "truncated");
  EXPECT_INVALID(Base64Decode("YWI=="), "not a multiple of 4");
  EXPECT_INVALID(Base64Decode("YW\nJjZ"), "invalid character 0xa at offset 2");
}

TEST(DataUriTest, ParsesAndRejects) {
  const std::string png = EncodePng(TestPixels(5, 4, 3, 9), 5, 4, 3);
  auto uri = ParseDataUri("data:image/png;base64," + Base64Encode(png), 1 << 20);
  ASSERT_TRUE(uri.ok()) << uri.status();
  EXPECT_EQ(uri->media_type, "image/png");
  EXPECT_EQ(uri->bytes, png);
  EXPECT_TRUE(ParseDataUri("DATA:Image/JPEG;base64,AAAA", 10).ok());
  EXPECT_INVALID(ParseDataUri("data:image/gif;base64,AAAA", 10),
                 "unsupported media type 'image/gif'");
  EXPECT_INVALID(ParseDataUri("data:image/png,AAAA", 10), "base64-encoded");
  EXPECT_INVALID(ParseDataUri("data:image/png;base64", 10), "no ','");
  EXPECT_INVALID(ParseDataUri("data:image/png;base64,AA!A", 10), "base64: invalid character '!'");
  EXPECT_INVALID(ParseDataUri("data:image/png;base64," + std::string(400, 'A'), 100),
                 "limit of 100 bytes");
}

// ---- Preprocessing against independent references ---------------------------------------------

// PIL's resampling written directly as a 1-D convolution per output sample (PIL Resample.c
// semantics: support scaled by the downscale factor, weights normalised, rounded to 22-bit fixed
// point, accumulator started at 0.5, result clamped to [0, 255]).
double RefFilter(double x, int resample) {
  x = std::fabs(x);
  if (resample == 2) return x < 1 ? 1 - x : 0;
  const double a = -0.5;
  if (x < 1) return (a + 2) * x * x * x - (a + 3) * x * x + 1;
  if (x < 2) return a * x * x * x - 5 * a * x * x + 8 * a * x - 4 * a;
  return 0;
}

std::vector<uint8_t> RefResample1D(const std::vector<uint8_t>& in, int len, int count,
                                   int stride_el, int stride_line, int out_len, int out_stride_el,
                                   int out_stride_line, int resample, std::vector<uint8_t> out) {
  const double scale = double(len) / out_len, fs = std::max(1.0, scale);
  const double support = (resample == 2 ? 1.0 : 2.0) * fs;
  for (int o = 0; o < out_len; ++o) {
    const double center = (o + 0.5) * scale;
    const int lo = std::max(0, int(std::floor(center - support + 0.5)));
    const int hi = std::min(len, int(std::floor(center + support + 0.5)));
    std::vector<double> w;
    double total = 0;
    for (int i = lo; i < hi; ++i) {
      w.push_back(RefFilter((i - center + 0.5) / fs, resample));
      total += w.back();
    }
    std::vector<long long> q;
    for (double v : w) q.push_back(std::llround(v / total * (1 << 22)));  // half away from zero
    for (int line = 0; line < count; ++line) {
      for (int ch = 0; ch < 3; ++ch) {
        long long acc = 1 << 21;
        for (int i = lo; i < hi; ++i)
          acc += q[i - lo] * in[line * stride_line + i * stride_el + ch];
        out[line * out_stride_line + o * out_stride_el + ch] =
            static_cast<uint8_t>(std::clamp<long long>(acc >> 22, 0, 255));
      }
    }
  }
  return out;
}

Image RefResize(const Image& im, int oh, int ow, int resample) {
  Image cur = im;
  if (ow != im.width) {
    Image t{ow, cur.height, std::vector<uint8_t>(size_t(ow) * cur.height * 3)};
    t.rgb = RefResample1D(cur.rgb, cur.width, cur.height, 3, cur.width * 3, ow, 3, ow * 3, resample,
                          t.rgb);
    cur = t;
  }
  if (oh != im.height) {
    Image t{cur.width, oh, std::vector<uint8_t>(size_t(cur.width) * oh * 3)};
    // Columns are lines now: element stride = one row, line stride = one pixel.
    t.rgb = RefResample1D(cur.rgb, cur.height, cur.width, cur.width * 3, 3, oh, cur.width * 3, 3,
                          resample, t.rgb);
    cur = t;
  }
  return cur;
}

// Unquantised double-precision separable bicubic (no uint8 rounding between passes).
std::vector<double> FloatResize(const Image& im, int oh, int ow) {
  auto weights = [](int len, int out_len, int o, int* lo) {
    const double scale = double(len) / out_len, fs = std::max(1.0, scale), support = 2 * fs;
    const double center = (o + 0.5) * scale;
    *lo = std::max(0, int(std::floor(center - support + 0.5)));
    const int hi = std::min(len, int(std::floor(center + support + 0.5)));
    std::vector<double> w;
    double t = 0;
    for (int i = *lo; i < hi; ++i) t += w.emplace_back(RefFilter((i - center + 0.5) / fs, 3));
    for (double& v : w) v /= t;
    return w;
  };
  std::vector<double> tmp(size_t(im.height) * ow * 3), out(size_t(oh) * ow * 3);
  for (int y = 0; y < im.height; ++y) {
    for (int x = 0; x < ow; ++x) {
      int lo;
      auto w = weights(im.width, ow, x, &lo);
      for (int c = 0; c < 3; ++c) {
        double s = 0;
        for (size_t i = 0; i < w.size(); ++i)
          s += w[i] * im.rgb[(size_t(y) * im.width + lo + i) * 3 + c];
        tmp[(size_t(y) * ow + x) * 3 + c] = s;
      }
    }
  }
  for (int y = 0; y < oh; ++y) {
    int lo;
    auto w = weights(im.height, oh, y, &lo);
    for (int x = 0; x < ow; ++x) {
      for (int c = 0; c < 3; ++c) {
        double s = 0;
        for (size_t i = 0; i < w.size(); ++i) s += w[i] * tmp[((lo + i) * ow + x) * 3 + c];
        out[(size_t(y) * ow + x) * 3 + c] = s;
      }
    }
  }
  return out;
}

TEST(PreprocessTest, ResizeMatchesPilReferenceForOddSizes) {
  const std::vector<std::array<int, 4>> cases = {// {w, h, out_w, out_h}
                                                 {37, 23, 32, 20}, {13, 29, 18, 18},
                                                 {50, 50, 7, 11},  {5, 3, 41, 17},
                                                 {64, 48, 64, 31}, {31, 9, 9, 9}};
  for (const auto& [w, h, ow, oh] : cases) {
    const Image im = MakeImage(w, h, w * 100 + h);
    for (int resample : {2, 3}) {
      auto got = Resize(im, oh, ow, resample);
      ASSERT_TRUE(got.ok()) << got.status();
      const Image want = RefResize(im, oh, ow, resample);
      ASSERT_EQ(got->width, ow);
      ASSERT_EQ(got->height, oh);
      EXPECT_EQ(got->rgb, want.rgb)
          << w << "x" << h << " -> " << ow << "x" << oh << " resample " << resample;
    }
    // PIL rounds and clamps to uint8 between passes, so it departs from exact arithmetic where
    // bicubic overshoots; on average it stays within a level.
    auto got = Resize(im, oh, ow, 3);
    const auto exact = FloatResize(im, oh, ow);
    double err = 0;
    for (size_t i = 0; i < exact.size(); ++i)
      err += std::fabs(std::clamp(exact[i], 0.0, 255.0) - got->rgb[i]);
    EXPECT_LT(err / exact.size(), 1.0) << w << "x" << h << " -> " << ow << "x" << oh;
  }
}

TEST(PreprocessTest, ResizeOfConstantImageIsConstant) {
  Image im{19, 11, std::vector<uint8_t>(19 * 11 * 3, 173)};
  auto got = Resize(im, 40, 7, 3);
  ASSERT_TRUE(got.ok());
  for (uint8_t v : got->rgb) ASSERT_EQ(v, 173);
}

TEST(PreprocessTest, ShortestEdgeSizeFollowsHf) {
  EXPECT_EQ(ShortestEdgeOutputSize(480, 640, 336), std::make_pair(336, 448));
  EXPECT_EQ(ShortestEdgeOutputSize(640, 480, 336), std::make_pair(448, 336));
  EXPECT_EQ(ShortestEdgeOutputSize(23, 37, 20), std::make_pair(20, 32));  // int(20 * 37 / 23) = 32
  EXPECT_EQ(ShortestEdgeOutputSize(100, 100, 224), std::make_pair(224, 224));
}

// HF center_crop, written as Python would index it (with zero padding when the crop is larger).
Image RefCenterCrop(const Image& im, int ch, int cw) {
  auto pyfloordiv = [](int a, int b) { return int(std::floor(double(a) / b)); };
  const int H = im.height, W = im.width;
  const int nh = std::max(ch, H), nw = std::max(cw, W);
  std::vector<uint8_t> padded(size_t(nh) * nw * 3, 0);
  const int tp = int(std::ceil((nh - H) / 2.0)), lp = int(std::ceil((nw - W) / 2.0));
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x)
      for (int c = 0; c < 3; ++c)
        padded[((y + tp) * nw + x + lp) * 3 + c] = im.rgb[(y * W + x) * 3 + c];
  const int top = pyfloordiv(H - ch, 2) + tp, left = pyfloordiv(W - cw, 2) + lp;
  Image out{cw, ch, std::vector<uint8_t>(size_t(ch) * cw * 3)};
  for (int y = 0; y < ch; ++y)
    for (int x = 0; x < cw; ++x)
      for (int c = 0; c < 3; ++c)
        out.rgb[(y * cw + x) * 3 + c] = padded[((top + y) * nw + left + x) * 3 + c];
  return out;
}

TEST(PreprocessTest, CenterCropMatchesHfIncludingPadding) {
  const Image im = MakeImage(9, 7, 4);
  for (auto [ch, cw] : {std::pair{4, 4}, {7, 9}, {3, 8}, {10, 5}, {12, 13}, {1, 1}}) {
    EXPECT_EQ(CenterCrop(im, ch, cw).rgb, RefCenterCrop(im, ch, cw).rgb) << ch << "x" << cw;
  }
}

std::vector<float> RefNormalize(const Image& im, const PreprocessorConfig& c) {
  std::vector<float> out(size_t(im.width) * im.height * 3);
  const size_t plane = size_t(im.width) * im.height;
  for (int ch = 0; ch < 3; ++ch) {
    for (size_t i = 0; i < plane; ++i) {
      // numpy: uint8 -> float64 * scale -> float32, then (x - mean) / std in float32
      float x = float(double(im.rgb[i * 3 + ch]) * c.rescale_factor);
      out[ch * plane + i] = (x - c.image_mean[ch]) / c.image_std[ch];
    }
  }
  return out;
}

TEST(PreprocessTest, ClipPipelineEqualsReference) {
  auto cfg = ParsePreprocessorConfig(R"({
    "image_processor_type": "CLIPImageProcessor", "do_resize": true, "size": {"shortest_edge": 20},
    "resample": 3, "do_center_crop": true, "crop_size": {"height": 16, "width": 16},
    "do_rescale": true, "rescale_factor": 0.00392156862745098, "do_normalize": true,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    "do_convert_rgb": true})");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  const Image im = MakeImage(37, 23, 77);
  auto px = Preprocess(im, *cfg);
  ASSERT_TRUE(px.ok()) << px.status();
  ASSERT_EQ(px->height, 16);
  ASSERT_EQ(px->width, 16);
  const Image want = RefCenterCrop(RefResize(im, 20, 32, 3), 16, 16);
  EXPECT_EQ(px->data, RefNormalize(want, *cfg));
}

TEST(PreprocessTest, SiglipPipelineEqualsReference) {
  auto cfg = ParsePreprocessorConfig(R"({"image_processor_type": "SiglipImageProcessor",
    "size": {"height": 18, "width": 18}, "resample": 3, "rescale_factor": 0.00392156862745098,
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]})");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_FALSE(cfg->do_center_crop);
  const Image im = MakeImage(13, 29, 78);
  auto px = Preprocess(im, *cfg);
  ASSERT_TRUE(px.ok()) << px.status();
  EXPECT_EQ(px->data, RefNormalize(RefResize(im, 18, 18, 3), *cfg));
}

TEST(PreprocessTest, ConfigRoundTripsAndErrorsNameTheKey) {
  PreprocessorConfig c = DefaultPreprocessorConfig("SiglipImageProcessor");
  c.resize_height = 30;
  auto back = ParsePreprocessorConfig(PreprocessorConfigToJson(c));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(PreprocessorConfigToJson(*back), PreprocessorConfigToJson(c));
  EXPECT_EQ(ParsePreprocessorConfig(R"({"size": 336})")->shortest_edge, 336);  // CLIP int size
  EXPECT_INVALID(ParsePreprocessorConfig(R"({"resample": 0})"),
                 "'resample' value 0 is not supported");
  EXPECT_INVALID(ParsePreprocessorConfig(R"({"size": {"foo": 1}})"), "key 'size'");
  EXPECT_INVALID(ParsePreprocessorConfig(R"({"image_std": [1, 0, 1]})"), "'image_std'");
  EXPECT_INVALID(ParsePreprocessorConfig(R"({"image_processor_type": "ViTImageProcessor"})"),
                 "'image_processor_type'");
  EXPECT_INVALID(ParsePreprocessorConfig("{"), "not valid JSON");
}

// ---- Digests ---------------------------------------------------------------------------------

std::string Hex(const std::array<uint8_t, 32>& d) { return ImageDigest{d}.hex(); }

// FIPS 180-4 example vectors (NIST CSRC "SHA256.pdf" and the one-million-'a' message).
TEST(DigestTest, Sha256KnownAnswers) {
  EXPECT_EQ(Hex(Sha256({})), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Hex(Sha256({""})), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Hex(Sha256({"abc"})),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(Hex(Sha256({two_blocks})),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string million(1000000, 'a');
  const char* kMillion = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
  EXPECT_EQ(Hex(Sha256({million})), kMillion);
  // Parts are hashed as one message, whatever the split (block boundaries included).
  const std::string_view m = million;
  EXPECT_EQ(Hex(Sha256({m.substr(0, 1), m.substr(1, 62), m.substr(63, 65), m.substr(128, 999871),
                        m.substr(999999)})),
            kMillion);
  EXPECT_EQ(Hex(Sha256({"a", "", "bc"})), Hex(Sha256({"abc"})));
}

// Pins the digest layout (domain, dims, canonical config JSON, pixels): values written by the
// hand-written SHA-256 this replaced. Changing the layout or the config JSON changes them, and
// with them every cache key; do that on purpose only.
TEST(DigestTest, LayoutIsStable) {
  EXPECT_EQ(ComputeImageDigest(MakeImage(8, 8, 1), PreprocessorConfig{}).hex(),
            "e8cf7f9a45a341cba580c45d3e28e227517c05b0cf193dde6b804e81f609d9db");
  EXPECT_EQ(
      ComputeImageDigest(MakeImage(333, 17, 5), DefaultPreprocessorConfig("CLIPImageProcessor"))
          .hex(),
      "05314e7084251c8deaf73d66f8476bea6fa2b7b21d543d24a887d588fcd71196");
}

TEST(DigestTest, DependsOnPixelsAndPreprocessing) {
  const PreprocessorConfig cfg;
  const Image a = MakeImage(8, 8, 1);
  Image b = a;
  EXPECT_EQ(ComputeImageDigest(a, cfg), ComputeImageDigest(b, cfg));
  b.rgb[17] ^= 1;
  EXPECT_NE(ComputeImageDigest(a, cfg), ComputeImageDigest(b, cfg));
  PreprocessorConfig cfg2 = cfg;
  cfg2.crop_height = 200;
  EXPECT_NE(ComputeImageDigest(a, cfg), ComputeImageDigest(a, cfg2));
  // The same picture as PNG and as data URI gives the same digest (it is over decoded pixels).
  const std::string png = EncodePng(a.rgb, 8, 8, 3);
  auto p1 = PrepareImage(png, cfg);
  auto p2 = PrepareImage("data:image/png;base64," + Base64Encode(png), cfg);
  ASSERT_TRUE(p1.ok() && p2.ok());
  EXPECT_EQ(p1->digest, p2->digest);
  EXPECT_EQ(p1->digest, ComputeImageDigest(a, cfg));
  EXPECT_NE(p1->digest.key64(), 0u);
  EXPECT_EQ(p1->pixels.data, p2->pixels.data);
  EXPECT_INVALID(PrepareImage("data:image/png;base64,%%%%", cfg), "base64");
}

// ---- Encoder cache ---------------------------------------------------------------------------

ImageEmbedding Emb(uint8_t id, int rows, int hidden) {
  return muse::testing::TestEmbedding(id, rows, hidden);
}

TEST(EncoderCacheTest, LruWithinByteBound) {
  EncoderCache cache(3 * 4 * 10 * 4);  // three entries of 4 x 10 floats
  for (uint8_t id = 1; id <= 3; ++id) EXPECT_TRUE(cache.Insert(Emb(id, 4, 10)));
  EXPECT_EQ(cache.size_bytes(), 480);
  ASSERT_TRUE(cache.Lookup(Emb(1, 4, 10).digest).has_value());  // 1 becomes most recent
  EXPECT_TRUE(cache.Insert(Emb(4, 4, 10)));                     // evicts 2 (least recent)
  EXPECT_FALSE(cache.Lookup(Emb(2, 4, 10).digest).has_value());
  auto hit = cache.Lookup(Emb(1, 4, 10).digest);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ((*hit->data)[0], 1.0f);
  EXPECT_TRUE(cache.Lookup(Emb(3, 4, 10).digest).has_value());
  EXPECT_TRUE(cache.Lookup(Emb(4, 4, 10).digest).has_value());
  EXPECT_EQ(cache.hits(), 4u);
  EXPECT_EQ(cache.misses(), 1u);
  EXPECT_EQ(cache.evictions(), 1u);
  // A bigger entry evicts as many as needed; one larger than the capacity is refused.
  EXPECT_TRUE(cache.Insert(Emb(5, 8, 10)));
  EXPECT_LE(cache.size_bytes(), cache.capacity_bytes());
  EXPECT_EQ(cache.num_entries(), 2u);
  EXPECT_FALSE(cache.Insert(Emb(6, 13, 10)));
  EXPECT_LE(cache.size_bytes(), cache.capacity_bytes());
  // Re-inserting a digest replaces it without double counting.
  EXPECT_TRUE(cache.Insert(Emb(5, 8, 10)));
  EXPECT_EQ(cache.num_entries(), 2u);
  EXPECT_EQ(cache.size_bytes(), 480);
}

TEST(EncoderCacheTest, ConcurrentUseStaysWithinBound) {
  EncoderCache cache(50 * 40);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&cache, t] {
      for (int i = 0; i < 2000; ++i) {
        const uint8_t id = static_cast<uint8_t>((i * 7 + t * 13) % 61);
        if (!cache.Lookup(Emb(id, 1, 10 + id % 5).digest)) cache.Insert(Emb(id, 1, 10 + id % 5));
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_LE(cache.size_bytes(), cache.capacity_bytes());
  EXPECT_EQ(cache.hits() + cache.misses(), 8000u);
}

}  // namespace
}  // namespace muse::vision
