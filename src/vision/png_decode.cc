// PNG -> 8-bit RGB with libpng, for untrusted input.
//
// libpng reports errors through our error callback, which longjmps back into the function that
// made the failing call (png_jmpbuf). Those functions (Png*Phase below) hold only trivially
// destructible locals and call nothing but libpng; the caller owns every C++ object and always
// runs png_destroy_read_struct.
//
// Pixels follow PIL's Image.open(...).convert("RGB"): palette -> its RGB entries (tRNS ignored),
// grey (1/2/4 bits scaled to 0..255) replicated, alpha dropped, no gamma/sBIT/bKGD handling.
// 16-bit samples keep their high byte, as PIL does for RGB/RGBA/LA 16-bit (and as stb_image,
// which this replaces, did); PIL's 16-bit *grey* ("I;16") clamps to 255 instead, which we do not
// copy: it turns nearly every 16-bit grey image white.
#include <png.h>

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "src/vision/image_decoders.h"

namespace muse::vision::internal {
namespace {

// Ancillary chunks libpng may store (tEXt, sPLT, unknown) and the largest chunk or decompressed
// zTXt/iCCP it will allocate: nothing we use needs more.
constexpr png_uint_32 kPngChunkCacheMax = 128;
constexpr png_alloc_size_t kPngChunkMallocMax = 8u << 20;

struct PngSource {
  const uint8_t* data;
  size_t size;
  size_t pos;
  char message[256];
};

void OnPngError(png_structp png, png_const_charp msg) {
  auto* src = static_cast<PngSource*>(png_get_error_ptr(png));
  std::snprintf(src->message, sizeof(src->message), "%s", msg ? msg : "unknown libpng error");
  png_longjmp(png, 1);
}

void OnPngWarning(png_structp, png_const_charp) {}  // never write to stderr

void OnPngRead(png_structp png, png_bytep out, png_size_t n) {
  auto* src = static_cast<PngSource*>(png_get_io_ptr(png));
  if (n > src->size - src->pos) png_error(png, "unexpected end of data");
  std::memcpy(out, src->data + src->pos, n);
  src->pos += n;
}

// ---- setjmp phases: trivially destructible locals only, libpng calls only ----

bool PngHeaderPhase(png_structp png, png_infop info) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_info(png, info);
  return true;
}

bool PngTransformPhase(png_structp png, png_infop info) {
  if (setjmp(png_jmpbuf(png))) return false;
  const int color = png_get_color_type(png, info);
  const int depth = png_get_bit_depth(png, info);
  if (depth == 16) png_set_strip_16(png);  // high byte
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if ((color & PNG_COLOR_MASK_COLOR) == 0 && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  // Alpha channels, and the one palette expansion adds from tRNS, are dropped.
  if ((color & PNG_COLOR_MASK_ALPHA) != 0 || color == PNG_COLOR_TYPE_PALETTE) {
    png_set_strip_alpha(png);
  }
  if ((color & PNG_COLOR_MASK_COLOR) == 0) png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  return true;
}

bool PngDecodePhase(png_structp png, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  // No png_read_end: like PIL, chunks after the image data are not needed and not checked.
  return true;
}

absl::Status PngError(const char* what, const PngSource& src) {
  return absl::InvalidArgumentError(absl::StrCat("image: ", what, " (", src.message, ")"));
}

}  // namespace

absl::StatusOr<Image> DecodePng(const uint8_t* data, size_t size, const DecodeLimits& limits) {
  // IHDR must come first (bytes 8..32): check the limits from it before libpng allocates
  // anything size-dependent, so even a header with a bad CRC is reported as oversized.
  if (size >= 24 && std::memcmp(data + 12, "IHDR", 4) == 0) {
    auto be32 = [&](size_t off) {
      return (int64_t{data[off]} << 24) | (int64_t{data[off + 1]} << 16) |
             (int64_t{data[off + 2]} << 8) | int64_t{data[off + 3]};
    };
    RETURN_IF_ERROR(CheckDimensions("PNG", be32(16), be32(20), limits));
  }
  auto src = std::make_unique<PngSource>();
  *src = PngSource{data, size, 0, {}};
  png_structp png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, src.get(), OnPngError, OnPngWarning);
  if (png == nullptr) return absl::InvalidArgumentError("image: cannot create PNG decoder");
  png_infop info = png_create_info_struct(png);
  struct Destroy {
    png_structp* png;
    png_infop* info;
    ~Destroy() { png_destroy_read_struct(png, info, nullptr); }  // null *info is fine
  } destroy{&png, &info};
  if (info == nullptr) return absl::InvalidArgumentError("image: cannot create PNG decoder");
  png_set_read_fn(png, src.get(), OnPngRead);
  png_set_chunk_cache_max(png, kPngChunkCacheMax);
  png_set_chunk_malloc_max(png, kPngChunkMallocMax);
  // libpng's own dimension check, as a second line behind CheckDimensions.
  const int64_t side = std::clamp<int64_t>(limits.max_pixels, 1, PNG_UINT_31_MAX);
  png_set_user_limits(png, static_cast<png_uint_32>(side), static_cast<png_uint_32>(side));

  if (!PngHeaderPhase(png, info)) return PngError("invalid PNG header", *src);
  const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  RETURN_IF_ERROR(CheckDimensions("PNG", w, h, limits));
  if (!PngTransformPhase(png, info)) return PngError("invalid PNG header", *src);
  if (png_get_bit_depth(png, info) != 8 || png_get_channels(png, info) != 3 ||
      png_get_rowbytes(png, info) != size_t{w} * 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("image: unsupported PNG layout (", int{png_get_bit_depth(png, info)}, "-bit, ",
                     int{png_get_channels(png, info)}, " channels after conversion to RGB)"));
  }
  Image img;
  img.width = static_cast<int>(w);
  img.height = static_cast<int>(h);
  img.rgb.resize(size_t{w} * h * 3);
  std::vector<png_bytep> rows(h);
  for (png_uint_32 y = 0; y < h; ++y) rows[y] = img.rgb.data() + size_t{y} * w * 3;
  if (!PngDecodePhase(png, rows.data())) return PngError("corrupt or truncated PNG", *src);
  return img;
}

}  // namespace muse::vision::internal
