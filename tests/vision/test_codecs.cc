#include "tests/vision/test_codecs.h"

#include <jpeglib.h>
#include <png.h>

#include <cstdio>
#include <cstdlib>

namespace muse::testing {
namespace {

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "test codec failure: %s\n", what);
  std::abort();
}

void PngWrite(png_structp png, png_bytep data, png_size_t n) {
  static_cast<std::string*>(png_get_io_ptr(png))->append(reinterpret_cast<char*>(data), n);
}
void PngFlush(png_structp) {}
void PngDie(png_structp, png_const_charp msg) { Die(msg); }

int Channels(int color_type) {
  switch (color_type) {
    case 0:
    case 3:
      return 1;
    case 4:
      return 2;
    case 2:
      return 3;
    default:
      return 4;
  }
}

}  // namespace

std::string EncodePngLib(const std::vector<uint16_t>& samples, int w, int h, const PngSpec& spec) {
  const int c = Channels(spec.color_type);
  if (samples.size() != static_cast<size_t>(w) * h * c) Die("sample count");
  std::string out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, PngDie, nullptr);
  png_infop info = png_create_info_struct(png);
  png_set_write_fn(png, &out, PngWrite, PngFlush);
  png_set_IHDR(png, info, w, h, spec.bit_depth, spec.color_type,
               spec.interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (spec.color_type == 3) {
    std::vector<png_color> pal(spec.palette.size() / 3);
    for (size_t i = 0; i < pal.size(); ++i) {
      pal[i] = {spec.palette[3 * i], spec.palette[3 * i + 1], spec.palette[3 * i + 2]};
    }
    png_set_PLTE(png, info, pal.data(), static_cast<int>(pal.size()));
    if (!spec.trns_alpha.empty()) {
      png_set_tRNS(png, info, spec.trns_alpha.data(), static_cast<int>(spec.trns_alpha.size()),
                   nullptr);
    }
  }
  png_write_info(png, info);
  // Pack rows by hand: sub-byte samples MSB first, 16-bit big-endian (the PNG byte layout).
  const size_t row_bytes = (static_cast<size_t>(w) * c * spec.bit_depth + 7) / 8;
  std::vector<std::vector<uint8_t>> rows(h, std::vector<uint8_t>(row_bytes, 0));
  for (int y = 0; y < h; ++y) {
    for (int i = 0; i < w * c; ++i) {
      const uint16_t v = samples[static_cast<size_t>(y) * w * c + i];
      if (spec.bit_depth == 16) {
        rows[y][2 * i] = static_cast<uint8_t>(v >> 8);
        rows[y][2 * i + 1] = static_cast<uint8_t>(v);
      } else if (spec.bit_depth == 8) {
        rows[y][i] = static_cast<uint8_t>(v);
      } else {
        const int bit = i * spec.bit_depth;
        rows[y][bit / 8] |= static_cast<uint8_t>(v << (8 - spec.bit_depth - bit % 8));
      }
    }
  }
  std::vector<png_bytep> ptrs(h);
  for (int y = 0; y < h; ++y) ptrs[y] = rows[y].data();
  png_write_image(png, ptrs.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

std::string EncodeJpegLib(const std::vector<uint8_t>& px, int w, int h, int components, int quality,
                          bool progressive) {
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &buf, &size);
  c.image_width = w;
  c.image_height = h;
  c.input_components = components;
  c.in_color_space = components == 1   ? JCS_GRAYSCALE
                     : components == 3 ? JCS_RGB
                     : components == 4 ? JCS_CMYK
                                       : JCS_UNKNOWN;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, quality, TRUE);
  if (progressive) jpeg_simple_progression(&c);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row =
        const_cast<uint8_t*>(px.data()) + static_cast<size_t>(c.next_scanline) * w * components;
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  std::string out(reinterpret_cast<char*>(buf), size);
  jpeg_destroy_compress(&c);
  std::free(buf);
  return out;
}

std::vector<uint8_t> ReferenceDecodeJpeg(const std::string& jpeg, int components) {
  jpeg_decompress_struct d;
  jpeg_error_mgr err;
  d.err = jpeg_std_error(&err);  // default error_exit exits the process: fine for tests
  jpeg_create_decompress(&d);
  jpeg_mem_src(&d, reinterpret_cast<const unsigned char*>(jpeg.data()), jpeg.size());
  jpeg_read_header(&d, TRUE);
  d.out_color_space = components == 4 ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(&d);
  const size_t stride = static_cast<size_t>(d.output_width) * d.output_components;
  std::vector<uint8_t> out(stride * d.output_height);
  while (d.output_scanline < d.output_height) {
    JSAMPROW row = out.data() + d.output_scanline * stride;
    jpeg_read_scanlines(&d, &row, 1);
  }
  jpeg_finish_decompress(&d);
  jpeg_destroy_decompress(&d);
  return out;
}

}  // namespace muse::testing
